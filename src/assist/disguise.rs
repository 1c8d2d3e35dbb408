//! Spelling tricks that hide a word from keyword rules, as a normaliser (letters
//! spelled out one by one, "c a s i n o", "W-H-A-T-S-A-P-P", "fr.ee") and as evidence
//! of their own: no customer types a word that mixes Cyrillic and Latin letters
//! ("Сheap Rоlex") or puts a digit or symbol in the middle of a word ("b1tcoin").

use super::normalize::is_cjk;

/// Single letters spelled out in a row that are read as one word.
const MIN_SPELLED: usize = 3;

/// `text` with letters spelled out one by one joined into words ("c a s i n o" →
/// "casino", "W-H-A-T-S-A-P-P" → "WHATSAPP") and `.`, `-`, `_`, `·` or `*` between two
/// letters of a word dropped ("fr.ee" → "free"). Runs shorter than three letters and
/// everything else are left as they are. Idempotent; never panics.
pub(crate) fn join_spelled(text: &str) -> String {
    let cs: Vec<char> = text.chars().collect();
    let letter = |i: usize| cs.get(i).is_some_and(|c| c.is_alphabetic() && !is_cjk(*c));
    let filler = |i: usize| {
        cs.get(i)
            .is_some_and(|&c| c.is_whitespace() || matches!(c, '.' | '-' | '_' | '·' | '*'))
    };
    // A spelled-out letter: a letter with no letter or digit on either side.
    let single = |i: usize| {
        let alnum = |j: Option<usize>| {
            j.and_then(|j| cs.get(j))
                .is_some_and(|c| c.is_alphanumeric())
        };
        letter(i) && !alnum(i.checked_sub(1)) && !alnum(Some(i + 1))
    };
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while let Some(&c) = cs.get(i) {
        if single(i) {
            // Collect the run: single letters separated by filler.
            let mut run = vec![i];
            let mut j = i + 1;
            loop {
                let mut k = j;
                while filler(k) {
                    k += 1;
                }
                if k > j && single(k) {
                    run.push(k);
                    j = k + 1;
                } else {
                    break;
                }
            }
            if run.len() >= MIN_SPELLED {
                out.extend(run.iter().filter_map(|&r| cs.get(r)));
                i = j;
                continue;
            }
        }
        // Punctuation inside a word ("fr.ee", "sp.ins"): dropped.
        if !c.is_whitespace() && filler(i) && i > 0 && letter(i - 1) && letter(i + 1) {
            i += 1;
            continue;
        }
        out.push(c);
        i += 1;
    }
    out
}

/// Whether `c` is a Cyrillic or Greek letter.
fn foreign_letter(c: char) -> bool {
    matches!(u32::from(c), 0x0370..=0x04FF)
}

/// Words of `text` written to slip past a filter: `(mixed, leet)` where `mixed` counts
/// words mixing Latin with Cyrillic or Greek letters, or with an invisible character
/// inside, and `leet` words with one digit or `@ ! $ |` standing between letters
/// ("b1tcoin", "c@sino", "sh!t"; at least three letters and no other digit, so "b2b",
/// "k8s", "i18n", postcodes and e-mail addresses are not counted).
pub(crate) fn disguised_words(text: &str) -> (u32, u32) {
    let (mut mixed, mut leet) = (0, 0);
    for word in text.split(|c: char| c.is_whitespace() || is_cjk(c)) {
        let w = word.trim_matches(|c: char| !c.is_alphanumeric());
        let latin = w.chars().filter(|c| c.is_ascii_alphabetic()).count();
        let invisible = w.chars().any(|c| {
            matches!(
                c,
                '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}'
            )
        });
        // Scripts mixed inside one run of letters ("Rоlex"), not across a hyphen or
        // apostrophe (Russian "iPhone-ом").
        let mixed_run = w.split(|c: char| !c.is_alphanumeric()).any(|run| {
            run.chars().any(|c| c.is_ascii_alphabetic()) && run.chars().any(foreign_letter)
        });
        if (latin > 0 && invisible) || mixed_run {
            mixed += 1;
            continue;
        }
        if w.contains('@') && w.contains('.') {
            continue;
        }
        let cs: Vec<char> = w.chars().collect();
        let digits = cs.iter().filter(|c| c.is_ascii_digit()).count();
        let inner = (1..cs.len().saturating_sub(1))
            .filter(|&i| {
                let (a, b, c) = (cs.get(i - 1), cs.get(i), cs.get(i + 1));
                let is_letter = |c: Option<&char>| c.is_some_and(|c| c.is_ascii_alphabetic());
                is_letter(a)
                    && is_letter(c)
                    && b.is_some_and(|b| b.is_ascii_digit() || "@!$|".contains(*b))
            })
            .count();
        let subst = cs.iter().filter(|c| "@!$|".contains(**c)).count() + digits;
        if latin >= 3 && inner >= 1 && subst == inner {
            leet += 1;
        }
    }
    (mixed, leet)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spelled_out_letters_are_joined() {
        assert_eq!(
            join_spelled("c a s i n o 注册送 bonus"),
            "casino 注册送 bonus"
        );
        assert_eq!(join_spelled("W-H-A-T-S-A-P-P me"), "WHATSAPP me");
        assert_eq!(join_spelled("f r e e money"), "free money");
        assert_eq!(
            join_spelled("fr.ee c.a.s.i.n.o sp.ins"),
            "free casino spins"
        );
        // Short runs and ordinary text stay.
        assert_eq!(join_spelled("a b or c"), "a b or c");
        assert_eq!(join_spelled("I am a teacher"), "I am a teacher");
        assert_eq!(join_spelled("see 1 2 3 4"), "see 1 2 3 4");
        assert_eq!(join_spelled("加 微 信"), "加 微 信");
    }

    #[test]
    fn disguised_words_are_counted() {
        assert_eq!(disguised_words("Сheap Rоlex replicas"), (2, 0));
        assert_eq!(disguised_words("fr\u{200B}ee stuff"), (1, 0));
        assert_eq!(disguised_words("b1tcoin d0ubling 0ffer"), (0, 2));
        assert_eq!(disguised_words("c@sino, sh!t, id!ots"), (0, 3));
        for ham in [
            "b2b k8s i18n mp3 x86 a4 3rd 24h 10kg",
            "mail me at anna@example.com",
            "K1A0B1 postcode, RTX4090, covid19",
            "Москва is lovely",
            "купил iPhone-ом, iPhone'а",
            "hello?? hello?? anyone there?",
        ] {
            assert_eq!(disguised_words(ham), (0, 0), "{ham}");
        }
    }

    proptest::proptest! {
        /// Any text: no panic, joining is idempotent, and counting never panics.
        #[test]
        fn join_is_idempotent(text in "\\PC{0,120}") {
            let once = join_spelled(&text);
            proptest::prop_assert_eq!(join_spelled(&once), once.clone());
            let _ = disguised_words(&text);
        }

        /// Spaced or dotted letters of a word always join back into it.
        #[test]
        fn spelled_words_join(word in "[a-z]{3,12}", sep in "[ .\\-]") {
            let spelled: Vec<String> = word.chars().map(String::from).collect();
            proptest::prop_assert_eq!(join_spelled(&spelled.join(&sep)), word);
        }
    }
}
