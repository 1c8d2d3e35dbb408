//! Agent assistants on synthetic libraries of the sizes a large deployment has:
//! FAQ match against 10,000 entries, canned-reply suggestions over 100,000 replies
//! (exact prefix, typo prefix, Chinese prefix), and the spam filter's per-message
//! check with the sample rules in `tests/data/spam.toml`. Also the build (reload)
//! cost of each library.
//!
//! ```text
//! cargo bench --bench assist -- --quick
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use switchboard::bench_support::{
    AssistConfig, CannedLibrary, FaqIndex, Format, SpamFilter, SpamRules,
};

const EN: &[&str] = &[
    "order",
    "refund",
    "shipping",
    "delivery",
    "password",
    "account",
    "invoice",
    "payment",
    "card",
    "coupon",
    "discount",
    "return",
    "exchange",
    "size",
    "color",
    "warranty",
    "battery",
    "charger",
    "laptop",
    "phone",
    "shoes",
    "jacket",
    "subscription",
    "plan",
    "trial",
    "team",
    "seat",
    "api",
    "key",
    "limit",
    "export",
    "data",
    "privacy",
    "address",
    "courier",
    "parcel",
    "tracking",
    "store",
    "gift",
    "points",
    "member",
    "price",
    "stock",
    "cancel",
    "change",
    "update",
    "upgrade",
    "download",
    "login",
    "email",
    "phone",
    "app",
    "android",
    "iphone",
    "customs",
    "tax",
    "receipt",
    "bank",
    "transfer",
    "wallet",
    "balance",
    "damaged",
    "missing",
    "late",
    "early",
    "weekend",
    "holiday",
    "express",
    "standard",
    "international",
    "local",
];
const EN_LEAD: &[&str] = &[
    "how do i",
    "can i",
    "where is my",
    "why is my",
    "when will my",
    "what is the",
    "is there a",
    "do you have",
    "how long does the",
    "how much is the",
];
const ZH: &str = "订单退款发货物流快递密码账号发票支付优惠券折扣退货换货尺码颜色保修电池充电器电脑手机鞋子外套订阅套餐试用团队接口密钥导出数据隐私地址礼品积分会员价格库存取消修改升级下载登录邮箱海关税收据银行转账余额破损缺少延迟周末节假日国际本地";
const ZH_LEAD: &[&str] = &["怎么", "为什么", "什么时候", "可以", "请问", "如何", "哪里"];

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[(self.next() % xs.len() as u64) as usize]
    }
}

fn en_sentence(r: &mut Rng, words: usize) -> String {
    let mut s = r.pick(EN_LEAD).to_string();
    for _ in 0..words {
        s.push(' ');
        s.push_str(r.pick::<&str>(EN));
    }
    s
}

fn zh_sentence(r: &mut Rng, chars: usize) -> String {
    let zh: Vec<char> = ZH.chars().collect();
    let mut s = r.pick(ZH_LEAD).to_string();
    for _ in 0..chars {
        s.push(*r.pick(&zh));
    }
    s
}

/// A made-up word of 2-3 syllables out of a 3,000-word vocabulary.
fn pseudo_word(r: &mut Rng) -> String {
    const C: &[u8] = b"bcdfghjklmnprstvwz";
    const V: &[u8] = b"aeiou";
    let mut w = String::new();
    let n = r.next() % 3000;
    let mut x = n;
    for _ in 0..2 + n % 2 {
        w.push(C[(x % 18) as usize] as char);
        x /= 18;
        w.push(V[(x % 5) as usize] as char);
        x /= 5;
    }
    w
}

fn en_sentence_large(r: &mut Rng, words: usize) -> String {
    let mut s = r.pick(EN_LEAD).to_string();
    for _ in 0..words {
        s.push(' ');
        s.push_str(&pseudo_word(r));
    }
    s
}

/// Chinese over the 3,000 most common code points of the CJK block.
fn zh_sentence_large(r: &mut Rng, chars: usize) -> String {
    let mut s = r.pick(ZH_LEAD).to_string();
    for _ in 0..chars {
        s.push(char::from_u32(0x4E00 + (r.next() % 3000) as u32).unwrap());
    }
    s
}

/// `n` FAQ entries, each with two English and two Chinese variants, over a small
/// shop vocabulary (about 70 words, 100 characters: long posting lists, worst case)
/// or a large one (3,000 made-up words and 3,000 characters).
///
/// Answers are of a realistic length (about 30 English words and 30 Chinese
/// characters, what the blind sets' answers have), from their own generator so the
/// questions are the same as before answers were indexed (session 34).
fn faq_kb(n: usize, large: bool) -> String {
    let mut r = Rng(0x9E37_79B9_7F4A_7C15);
    let mut ra = Rng(0x2545_F491_4F6C_DD1D);
    let mut out = String::new();
    for i in 0..n {
        let qs = if large {
            [
                en_sentence_large(&mut r, 4),
                en_sentence_large(&mut r, 5),
                zh_sentence_large(&mut r, 6),
                zh_sentence_large(&mut r, 8),
            ]
        } else {
            [
                en_sentence(&mut r, 4),
                en_sentence(&mut r, 5),
                zh_sentence(&mut r, 6),
                zh_sentence(&mut r, 8),
            ]
        };
        let answer = if large {
            format!(
                "{} {}",
                en_sentence_large(&mut ra, 30),
                zh_sentence_large(&mut ra, 30)
            )
        } else {
            format!("{} {}", en_sentence(&mut ra, 30), zh_sentence(&mut ra, 30))
        };
        writeln!(
            out,
            "[[entry]]\nid = \"e{i}\"\nquestions = {qs:?}\nanswer = {answer:?}"
        )
        .unwrap();
    }
    out
}

/// `n` canned replies over a realistic spread of openings.
fn canned_lib(n: usize) -> String {
    let mut r = Rng(0xD1B5_4A32_D192_ED03);
    let openings = [
        "thank you for",
        "thanks for waiting",
        "hello",
        "hi there",
        "sorry for",
        "we have",
        "your order",
        "your refund",
        "please",
        "i have",
        "let me",
        "could you",
        "您好",
        "感谢",
        "抱歉",
        "请您",
        "已为您",
    ];
    let mut out = String::new();
    for i in 0..n {
        let text = format!(
            "{} {} {}",
            r.pick(&openings),
            en_sentence(&mut r, 3),
            zh_sentence(&mut r, 4)
        );
        let uses = r.next() % 1000;
        writeln!(out, "[[reply]]\nid = {i}\ntext = {text:?}\nuses = {uses}").unwrap();
    }
    out
}

fn cfg() -> AssistConfig {
    AssistConfig {
        max_file_bytes: 256 * 1024 * 1024,
        ..AssistConfig::default()
    }
}

fn faq(c: &mut Criterion) {
    for (name, large) in [
        ("faq_10k_small_vocab", false),
        ("faq_10k_large_vocab", true),
    ] {
        let text = faq_kb(10_000, large);
        let kb = FaqIndex::from_str(&text, Format::Toml, &cfg()).unwrap();
        let mut g = c.benchmark_group(name);
        for (what, q) in [
            (
                "match_en",
                "hi, how can I get a refund for my damaged laptop charger?",
            ),
            ("match_zh", "请问我的订单退款什么时候到账？"),
            (
                "match_300_chars",
                "I ordered a new laptop charger two weeks ago and the tracking still says the \
                 parcel is at customs, can you tell me whether I need to pay a tax or how long \
                 the delivery will take? I also want to know if I can change the address and \
                 whether the warranty covers the battery of my phone, thanks a lot!!",
            ),
        ] {
            assert!(q.chars().count() <= 300);
            g.bench_function(what, |b| b.iter(|| kb.best_match("support", black_box(q))));
        }
        g.sample_size(10);
        g.bench_function("build", |b| {
            b.iter(|| FaqIndex::from_str(black_box(&text), Format::Toml, &cfg()).unwrap())
        });
        g.finish();
    }
}

/// Loading a small library (`tests/data/faq.toml`, 42 entries): what a reload, or a
/// daemon starting with a library, pays, mostly the built-in lexicon, thesaurus and
/// background (parsed and compiled per library).
fn faq_small_build(c: &mut Criterion) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/faq.toml");
    let text = std::fs::read_to_string(path).unwrap();
    let mut g = c.benchmark_group("faq_42");
    g.bench_function("build", |b| {
        b.iter(|| FaqIndex::from_str(black_box(&text), Format::Toml, &cfg()).unwrap())
    });
    g.finish();
}

fn suggest(c: &mut Criterion) {
    let text = canned_lib(100_000);
    let lib = CannedLibrary::from_str(&text, Format::Toml, &cfg()).unwrap();
    let mut g = c.benchmark_group("suggest_100k");
    for (name, prefix) in [
        ("exact_broad", "thank you for"),
        ("exact_narrow", "your refund can i"),
        ("typo", "thnak yuo for"),
        ("typo_no_exact", "yuor refnd"),
        ("chinese", "您好怎么"),
        ("empty", ""),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| lib.suggest("support", black_box(prefix), 5))
        });
    }
    g.sample_size(10);
    g.bench_function("build", |b| {
        b.iter(|| CannedLibrary::from_str(black_box(&text), Format::Toml, &cfg()).unwrap())
    });
    g.finish();
}

fn spam(c: &mut Criterion) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/spam.toml");
    let rules = Arc::new(SpamRules::from_file(&path, &cfg()).unwrap());
    let keys: Vec<String> = (0..10_000).map(|i| format!("tenant/visitor{i}")).collect();
    let mut g = c.benchmark_group("spam_check");
    for (name, msg) in [
        (
            "ham_en",
            "Hi, my order #10023 hasn't arrived yet, can you check the tracking for me?",
        ),
        ("ham_zh", "请问我的订单什么时候发货，快递三天没更新了"),
        (
            "spam_keyword",
            "Best online casino bonus, 200 free spins for new players",
        ),
        (
            "spam_sample",
            "Earn $400 per day working from home, contact us now, no experience needed",
        ),
    ] {
        let mut f = SpamFilter::new(&cfg(), Some(rules.clone()));
        let mut i = 0usize;
        let mut now = 0u64;
        g.bench_function(name, |b| {
            b.iter(|| {
                i = (i + 1) % keys.len();
                now += 1;
                f.check(&keys[i], black_box(msg), now)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, faq, faq_small_build, suggest, spam);
criterion_main!(benches);
