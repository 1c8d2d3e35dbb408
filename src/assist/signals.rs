//! Evidence the spam filter weighs besides its keyword rules: text disguised with
//! look-alike characters and leetspeak, flooding within a message, links to domains
//! outside the site's own, and cues that a customer is *talking about* spam (reporting
//! a phishing SMS, asking about an order) rather than sending it.

use aho_corasick::{AhoCorasick, MatchKind};

use super::normalize::is_cjk;

/// The text with look-alike letters (Cyrillic, Greek, full-width digits are folded
/// later) mapped to Latin, leetspeak digits and symbols inside words mapped to the
/// letters they stand for (`v1agra`, `sh!t`, `m0rons`, `$ex`), and invisible
/// characters dropped. A word with no letter (`$300`, `2024`) is left alone.
pub(crate) fn deobfuscate(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        let letters = word.chars().any(|c| c.is_alphabetic());
        for c in word.chars() {
            out.push(if letters { leet(c) } else { c });
        }
        word.clear();
    };
    for c in text.chars() {
        if matches!(
            c,
            '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}'
        ) {
            continue;
        }
        if c.is_whitespace() || is_cjk(c) {
            flush(&mut word, &mut out);
            out.push(c);
        } else {
            word.push(confusable(c));
        }
    }
    flush(&mut word, &mut out);
    out
}

/// A digit or symbol written for a letter.
fn leet(c: char) -> char {
    match c {
        '0' => 'o',
        '1' | '!' | '|' => 'i',
        '3' => 'e',
        '4' | '@' => 'a',
        '5' | '$' => 's',
        '7' => 't',
        '8' => 'b',
        '€' => 'e',
        _ => c,
    }
}

/// A Cyrillic or Greek letter that looks like a Latin one.
fn confusable(c: char) -> char {
    match c {
        'а' | 'α' | 'А' | 'Α' => 'a',
        'в' | 'В' | 'β' | 'Β' => 'b',
        'с' | 'С' | 'ϲ' => 'c',
        'е' | 'Е' | 'ε' | 'Ε' => 'e',
        'н' | 'Н' | 'Η' => 'h',
        'і' | 'І' | 'ι' | 'Ι' => 'i',
        'ј' | 'Ј' => 'j',
        'к' | 'К' | 'κ' | 'Κ' => 'k',
        'м' | 'М' | 'Μ' => 'm',
        'п' | 'η' => 'n',
        'о' | 'О' | 'ο' | 'Ο' => 'o',
        'р' | 'Р' | 'ρ' | 'Ρ' => 'p',
        'ѕ' | 'Ѕ' => 's',
        'т' | 'Т' | 'τ' | 'Τ' => 't',
        'υ' | 'у' | 'У' | 'Υ' => 'y',
        'х' | 'Х' | 'χ' | 'Χ' => 'x',
        'ν' => 'v',
        'ω' => 'w',
        'ℓ' => 'l',
        _ => c,
    }
}

/// Characters of a repeated run that make a message a flood (a CJK character counts
/// twice: it carries a word's worth).
const FLOOD_WEIGHT: usize = 16;
/// Times a unit must repeat back to back.
const FLOOD_REPEATS: usize = 4;
/// Longest repeated unit looked for, in characters.
const FLOOD_UNIT: usize = 24;

/// Whether normalised text floods: one unit of two or more characters repeated back
/// to back at least [`FLOOD_REPEATS`] times over half the message (`free money free
/// money …`, 在吗在吗在吗在吗), or eight words or more of which at most a quarter differ.
pub(crate) fn flooded(norm: &str) -> bool {
    let words: Vec<&str> = norm.split(' ').filter(|w| !w.is_empty()).collect();
    if words.len() >= 8 {
        let mut distinct = words.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() * 4 <= words.len() {
            return true;
        }
    }
    let s: Vec<char> = norm.chars().filter(|&c| c != ' ').take(2048).collect();
    let n = s.len();
    let weight = |cs: &[char]| {
        cs.iter()
            .map(|&c| if is_cjk(c) { 2 } else { 1 })
            .sum::<usize>()
    };
    let total = weight(&s);
    for p in 2..=FLOOD_UNIT.min(n / FLOOD_REPEATS) {
        let mut run = 0;
        for i in 0..n - p {
            if s.get(i) == s.get(i + p) {
                run += 1;
                if run + p >= FLOOD_REPEATS * p {
                    let start = i + 1 - run;
                    let covered = weight(s.get(start..i + 1 + p).unwrap_or(&[]));
                    if covered >= FLOOD_WEIGHT && covered * 2 >= total {
                        return true;
                    }
                }
            } else {
                run = 0;
            }
        }
    }
    false
}

/// Top-level domains recognised in a bare `name.tld` (with a scheme or `www.`, any is).
const TLDS: &[&str] = &[
    "com", "net", "org", "info", "biz", "xyz", "top", "shop", "site", "online", "club", "vip",
    "cc", "io", "co", "me", "ly", "gl", "link", "click", "app", "live", "store", "win", "bid",
    "loan", "work", "cn", "ru", "tk", "ml", "ga", "cf", "gq", "us", "uk", "de", "fr", "jp", "kr",
    "in", "hk", "tw", "sg", "au", "ca", "eu", "ws", "to", "su", "help", "pro", "icu", "buzz",
    "fun", "space", "website", "today", "life", "world", "email", "support", "money", "cash",
    "bet", "casino", "poker", "loans", "gift",
];

/// The host names linked in `text` (lowercase, without `www.`), at most `max`.
pub(crate) fn linked_hosts(text: &str, max: usize) -> Vec<String> {
    let mut hosts = Vec::new();
    let lower = text.to_lowercase();
    let tokens =
        lower.split(|c: char| c.is_whitespace() || is_cjk(c) || "<>()[]\"'，。".contains(c));
    for tok in tokens {
        if hosts.len() >= max {
            break;
        }
        let (schemed, rest) = match tok.find("://") {
            Some(i) => (true, tok.get(i + 3..).unwrap_or("")),
            None => (false, tok),
        };
        let (www, rest) = match rest.strip_prefix("www.") {
            Some(r) => (true, r),
            None => (false, rest),
        };
        let host: &str = rest
            .split(['/', '?', '#', ':'])
            .next()
            .unwrap_or("")
            .trim_end_matches(['.', ',', '!', '?', ';']);
        if host.contains('@') {
            continue;
        }
        let labels: Vec<&str> = host.split('.').collect();
        let ok_labels = labels.len() >= 2
            && labels
                .iter()
                .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        let tld = labels.last().copied().unwrap_or("");
        if ok_labels
            && tld.chars().all(|c| c.is_ascii_alphabetic())
            && (schemed || www || TLDS.contains(&tld) || SHORTENERS.contains(&host))
        {
            hosts.push(host.to_owned());
        }
    }
    hosts
}

/// Link shorteners and top-level domains that spam favours: a link to one of them is
/// enough to flag a message.
const SHORTENERS: &[&str] = &[
    "bit.ly",
    "t.cn",
    "t.me",
    "tinyurl.com",
    "goo.gl",
    "is.gd",
    "ow.ly",
    "cutt.ly",
    "t.co",
    "rebrand.ly",
    "s.id",
    "url.cn",
    "dwz.cn",
];
const SPAMMY_TLDS: &[&str] = &[
    "xyz", "top", "club", "vip", "win", "bid", "loan", "live", "click", "link", "work", "tk", "ml",
    "ga", "cf", "gq", "ws", "su", "shop", "online", "site",
];

/// Whether `host` is a shortener or under a TLD that spam favours.
pub(crate) fn suspicious(host: &str) -> bool {
    let tld = host.rsplit('.').next().unwrap_or("");
    SHORTENERS.contains(&host) || SPAMMY_TLDS.contains(&tld)
}

/// Whether `host` is one of `own` or a subdomain of one.
pub(crate) fn is_own(host: &str, own: &[String]) -> bool {
    own.iter().any(|d| {
        host == d
            || host
                .strip_suffix(d.as_str())
                .is_some_and(|p| p.ends_with('.'))
    })
}

/// Whether `host` imitates one of the site's `own` domains: not one of them, but one
/// of their names (at least four letters: "brightpath" of `brightpath.example`) is a
/// word of it ("brightpath-verify.help", "login.brightpath.xyz").
pub(crate) fn imitates_own(host: &str, own: &[String]) -> bool {
    !is_own(host, own)
        && own.iter().any(|d| {
            let name = d.split('.').next().unwrap_or("");
            // The host's labels but its top-level one ("example" of x.example is a TLD).
            let labels = host.rsplit_once('.').map_or("", |(l, _)| l);
            name.len() >= 4
                && labels
                    .split(['.', '-'])
                    .any(|part| part.starts_with(name) || part.ends_with(name))
        })
}

/// Phrases asking to be contacted elsewhere (weak evidence: a customer may say them).
const CONTACT: &[&str] = &[
    "dm me",
    "pm me",
    "message me",
    "contact me",
    "text me",
    "whatsapp",
    "telegram",
    "wechat",
    "私聊",
    "加我",
    "加v",
    "vx",
    "进群",
    "加群",
    "微信",
    "qq",
];

/// Phrases luring with money or results (weak evidence).
const LURE: &[&str] = &[
    "guaranteed",
    "no experience",
    "no credit check",
    "instantly",
    "100%",
    "risk free",
    "limited offer",
    "act now",
    "one trick",
    "翻倍",
    "包过",
    "稳赚",
    "免费领取",
    "当天放款",
    "注册送",
    "轻松",
    "躺赚",
    "低价",
    "厂家直销",
];

/// Whether normalised `norm` holds one of `phrases` on word bounds.
fn holds(norm: &str, phrases: &[&str]) -> bool {
    phrases.iter().any(|p| {
        norm.match_indices(p).any(|(i, _)| {
            let before = norm.get(..i).and_then(|s| s.chars().next_back());
            let after = norm.get(i + p.len()..).and_then(|s| s.chars().next());
            let latin = |c: Option<char>| c.is_some_and(|c| !is_cjk(c));
            let bound = |c: Option<char>| c.is_none_or(|c| c == ' ' || is_cjk(c));
            (!latin(p.chars().next()) || bound(before))
                && (!latin(p.chars().next_back()) || bound(after))
        })
    })
}

/// Weak evidence in a message, each worth half a signal: `(contact, lure, shouting)`.
/// `contact`: asks to be contacted elsewhere or gives a handle or phone number (`@name`,
/// seven digits or more, "138xxxx"); `lure`: money or results promised, or a sum of
/// money with three digits or more; `shouting`: `$$$`, `!!!`, or mostly capitals over
/// twelve letters or more.
pub(crate) fn weak_evidence(text: &str, norm: &str) -> (bool, bool, bool) {
    let handle = text.split_whitespace().any(|w| {
        let w = w.trim_matches(|c: char| !c.is_alphanumeric() && c != '@');
        let digits = w.chars().filter(|c| c.is_ascii_digit()).count();
        let masked = w.chars().filter(|&c| c == 'x' || c == '*').count();
        (w.starts_with('@') && w.len() > 2 && !w.contains('.'))
            || digits >= 7
            || (digits >= 3 && masked >= 3)
    });
    let phone = {
        // "+1 555 0100": digits split by spaces, seven or more in a row of groups.
        let mut run = 0;
        let mut best = 0;
        for w in text.split_whitespace() {
            let d = w.trim_start_matches('+');
            if !d.is_empty() && d.chars().all(|c| c.is_ascii_digit() || c == '-') {
                run += d.chars().filter(char::is_ascii_digit).count();
                best = best.max(run);
            } else {
                run = 0;
            }
        }
        best >= 7
    };
    let contact = handle || phone || holds(norm, CONTACT);
    let sum = text
        .split(|c: char| c.is_whitespace() || is_cjk(c))
        .any(|w| {
            let digits = w.chars().filter(|c| c.is_ascii_digit()).count();
            (w.starts_with('$') || w.ends_with('$')) && digits >= 3
        })
        || norm.contains("日赚")
        || norm.contains("月入");
    let lure = sum || holds(norm, LURE);
    let letters: Vec<char> = text
        .chars()
        .filter(|c| c.is_alphabetic() && !is_cjk(*c))
        .collect();
    let upper = letters.iter().filter(|c| c.is_uppercase()).count();
    let shouting = text.contains("$$$")
        || text.contains("!!!")
        || (letters.len() >= 12 && upper * 10 >= letters.len() * 7);
    (contact, lure, shouting)
}

/// A visitor asking the site about its own products ("where is", "how much", 在哪,
/// 多少钱): a rule's keyword in such a question is more likely a product's name than
/// spam, so the question weighs half a signal against it.
const ASKING: &[&str] = &[
    "where is",
    "where are",
    "where can i",
    "how much",
    "how do i",
    "do you have",
    "do you sell",
    "is there a",
    "can i",
    "在哪",
    "多少钱",
    "怎么",
    "有没有",
    "请问",
    "可以吗",
];

/// Whether normalised `norm` asks about the site's own products.
pub(crate) fn asking(norm: &str) -> bool {
    holds(norm, ASKING)
}

/// Phrases of a customer reporting something they received: a rule's keyword next to
/// them is more likely quoted than sent (they count against the evidence, and veto a
/// refusal).
const REPORT_CUES: &[&str] = &[
    "i received",
    "i got a",
    "i just got",
    "got a message",
    "got an email",
    "got a text",
    "got a call",
    "text message",
    "sms",
    "is this you",
    "is that you",
    "is this from you",
    "is this real",
    "is this legit",
    "is it legit",
    "is this a scam",
    "scam",
    "phishing",
    "fraud",
    "report",
    "reporting",
    "suspicious",
    "pretending",
    "claims to be",
    "claiming to be",
    "收到短信",
    "收到一条",
    "短信",
    "诈骗",
    "骗子",
    "骗局",
    "是你们吗",
    "是真的吗",
    "举报",
    "冒充",
];

/// Phrases of a customer talking about their own purchase: they veto a refusal (the
/// message is flagged at most) but do not count against the evidence, since angry
/// customers also insult and threaten ("you m0rons lost my parcel").
const ORDER_CUES: &[&str] = &[
    "my order",
    "i ordered",
    "ordered",
    "my package",
    "my parcel",
    "my account",
    "i bought",
    "purchased",
    "missing",
    "refund",
    "delivery",
    "订单",
    "我买的",
    "我下单",
    "我订的",
    "我的快递",
    "我的包裹",
    "退款",
];

/// What cues a message holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CuesFound {
    /// A [`REPORT_CUES`] phrase.
    pub(crate) report: bool,
    /// A [`ORDER_CUES`] phrase.
    pub(crate) order: bool,
}

impl CuesFound {
    /// Either kind.
    pub(crate) fn any(self) -> bool {
        self.report || self.order
    }
}

/// Finds [`REPORT_CUES`] and [`ORDER_CUES`] in normalised text (Latin ones on word
/// bounds).
pub(crate) struct Cues(AhoCorasick);

impl Cues {
    pub(crate) fn new() -> Option<Self> {
        AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .build(REPORT_CUES.iter().chain(ORDER_CUES))
            .ok()
            .map(Self)
    }

    /// Which cues normalised `norm` holds.
    pub(crate) fn found(&self, norm: &str) -> CuesFound {
        let mut found = CuesFound::default();
        for m in self.0.find_overlapping_iter(norm).filter(|m| {
            let before = norm.get(..m.start()).and_then(|s| s.chars().next_back());
            let after = norm.get(m.end()..).and_then(|s| s.chars().next());
            let first = norm.get(m.start()..).and_then(|s| s.chars().next());
            let last = norm.get(..m.end()).and_then(|s| s.chars().next_back());
            let bound = |edge: Option<char>, side: Option<char>| {
                edge.is_some_and(is_cjk) || side.is_none_or(|c| c == ' ' || is_cjk(c))
            };
            bound(first, before) && bound(last, after)
        }) {
            if m.pattern().as_usize() < REPORT_CUES.len() {
                found.report = true;
            } else {
                found.order = true;
            }
        }
        found
    }
}

impl std::fmt::Debug for Cues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cues")
    }
}

#[cfg(test)]
mod tests {
    use super::super::normalize::normalize;
    use super::*;

    #[test]
    fn leetspeak_and_look_alikes_are_read_as_letters() {
        assert_eq!(deobfuscate("v1agra m0rons sh!t"), "viagra morons shit");
        assert_eq!(deobfuscate("саsino"), "casino");
        assert_eq!(
            deobfuscate("fr\u{200B}ee $300 in 2024"),
            "free $300 in 2024"
        );
        assert_eq!(deobfuscate("加微信123"), "加微信123");
    }

    #[test]
    fn floods_within_a_message() {
        assert!(flooded(&normalize(
            "free money free money free money free money"
        )));
        assert!(flooded(&normalize("在吗在吗在吗在吗在吗在吗")));
        assert!(flooded(&normalize("buy buy buy buy buy buy buy buy now")));
        assert!(!flooded(&normalize(
            "hello, is anyone there? I have been waiting"
        )));
        assert!(!flooded(&normalize("哈哈哈 好的 谢谢")));
        assert!(!flooded(&normalize("soooooo slow")));
    }

    #[test]
    fn links_and_own_domains() {
        let h = linked_hosts(
            "see https://Shop.example.com/x?y and www.evil.xyz, bit.ly/abc; e.g. file.txt",
            8,
        );
        assert_eq!(h, ["shop.example.com", "evil.xyz", "bit.ly"]);
        let own = vec!["example.com".to_owned()];
        assert!(is_own("shop.example.com", &own));
        assert!(is_own("example.com", &own));
        assert!(!is_own("badexample.com", &own));
        assert!(linked_hosts("mail me at a@b.com", 8).is_empty());
        assert_eq!(linked_hosts("点击 t.cn/abc 领取", 8), ["t.cn"]);
        // A shortener under a TLD not in the list, and a newer TLD.
        assert_eq!(
            linked_hosts("see s.id/slim or brightpath-verify.help", 8),
            ["s.id", "brightpath-verify.help"]
        );
    }

    #[test]
    fn imitations_of_own_domains() {
        let own = vec!["brightpath.example".to_owned()];
        assert!(imitates_own("brightpath-verify.help", &own));
        assert!(imitates_own("login.brightpath.xyz", &own));
        assert!(imitates_own("mybrightpath.com", &own));
        assert!(!imitates_own("brightpath.example", &own));
        assert!(!imitates_own("shop.brightpath.example", &own));
        assert!(!imitates_own("paypal.com", &own));
        // The TLD of a host is not a name: "x.example" does not imitate example.com.
        assert!(!imitates_own(
            "brightpath.example",
            &["example.com".to_owned()]
        ));
    }

    #[test]
    fn weak_evidence_kinds() {
        let w = |t: &str| weak_evidence(t, &normalize(t));
        assert_eq!(w("DM me on telegram @richfast"), (true, false, false));
        assert_eq!(w("详情咨询 138xxxx"), (true, false, false));
        assert_eq!(w("call +1 555 0100"), (true, false, false));
        assert_eq!(w("earn $5000 a week"), (false, true, false));
        assert_eq!(w("兼职日赚500"), (false, true, false));
        assert_eq!(w("$$$ MAKE MONEY FAST $$$"), (false, false, true));
        assert_eq!(w("WHY IS NOBODY ANSWERING"), (false, false, true));
        assert_eq!(w("order 12345, I paid $30"), (false, false, false));
        assert_eq!(w("mail anna@example.com please"), (false, false, false));
    }

    #[test]
    fn asking_about_the_sites_products() {
        assert!(asking(&normalize("where can I find the jackpot edition?")));
        assert!(asking(&normalize("casino 主题的 event planning 课多少钱")));
        assert!(!asking(&normalize("best casino bonus today")));
        assert!(!asking(&normalize("cancan dance")));
    }

    proptest::proptest! {
        /// Any text: the evidence functions never panic.
        #[test]
        fn evidence_never_panics(text in "\\PC{0,160}") {
            let norm = normalize(&text);
            let _ = weak_evidence(&text, &norm);
            let _ = asking(&norm);
            let _ = imitates_own(&text.to_lowercase(), &["example.com".to_owned()]);
        }
    }

    #[test]
    fn cues_of_a_customer_reporting() {
        let c = Cues::new().unwrap();
        let found = |t: &str| {
            let f = c.found(&normalize(t));
            (f.report, f.order)
        };
        assert_eq!(
            found("I got a text saying I won, is this you?"),
            (true, false)
        );
        assert_eq!(
            found("the casino night decorations I ordered are missing"),
            (false, true)
        );
        assert_eq!(found("我收到一条短信说中奖了"), (true, false));
        assert_eq!(found("best online casino bonus"), (false, false));
        assert_eq!(found("smsx"), (false, false));
    }
}
