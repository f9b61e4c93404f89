//! What an inbound text means: a keyword that asks for an action (stop
//! promotions, stop everything, start again, help) and/or an answer to a
//! question (yes, no), read from the whole message as people really type
//! it: any case, with punctuation and spaces around or between the letters,
//! Cyrillic with Latin look-alike letters mixed in ("CTOП" with a Latin C,
//! T and O), "ё" for "е". Also the rest of `[replies]` that the store needs
//! to act on a reply in the transaction that records it: the texts sent
//! back and how long a message waits for its answer.
//!
//! The store asks [`ReplyRules::read`] for every inbound message; the
//! dispatcher holds the rules built from the config and swaps them on
//! reload. This module knows no config type (it sits beside `config`): the
//! lists arrive as plain words.

use crate::message::Millis;
use std::collections::HashMap;

/// A keyword's action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Keyword {
    /// Stop the messages the opt-out scope covers (promotions by default).
    Optout,
    /// Stop every message, transactional ones too.
    OptoutAll,
    /// Take back an earlier opt-out.
    Optin,
    /// Ask what this is and how to stop it: answered with the help text.
    Help,
}

impl Keyword {
    pub const ALL: [Keyword; 4] = [Keyword::Optout, Keyword::OptoutAll, Keyword::Optin, Keyword::Help];

    /// The name in the config, the store and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Keyword::Optout => "optout",
            Keyword::OptoutAll => "optout_all",
            Keyword::Optin => "optin",
            Keyword::Help => "help",
        }
    }
}

/// An answer to a question the message before asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Intent {
    Yes,
    No,
}

impl Intent {
    pub const ALL: [Intent; 2] = [Intent::Yes, Intent::No];

    pub fn as_str(self) -> &'static str {
        match self {
            Intent::Yes => "yes",
            Intent::No => "no",
        }
    }
}

/// What a text means: either, both ("OK" may be a yes and, if listed, a
/// keyword too) or neither.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Meaning {
    pub keyword: Option<Keyword>,
    pub intent: Option<Intent>,
}

/// Longest text, in letters and digits, that is still read: a keyword or an
/// answer is one short word, and a long text is never one.
const MAX_WORD: usize = 40;

/// How a reply is read and answered: the words of each meaning, the texts
/// sent back, the conversation window, and what an opt-out covers.
#[derive(Debug, Clone)]
pub struct ReplyRules {
    keywords: HashMap<String, Keyword>,
    intents: HashMap<String, Intent>,
    /// Sent back to a `help` keyword.
    pub help_text: String,
    /// Sent back to an opt-out keyword, when set.
    pub optout_reply: Option<String>,
    /// Sent back to an opt-in keyword, when set.
    pub optin_reply: Option<String>,
    /// An inbound message answers the latest message sent to its number
    /// within this long before it.
    pub window_ms: Millis,
    /// The region whose national form a sender's number may be written in.
    pub region: String,
    /// How long an auto-reply stays worth sending.
    pub reply_validity_ms: Millis,
}

impl Default for ReplyRules {
    /// No words (nothing is read), no texts; links within 72 hours.
    fn default() -> Self {
        ReplyRules {
            keywords: HashMap::new(),
            intents: HashMap::new(),
            help_text: String::new(),
            optout_reply: None,
            optin_reply: None,
            window_ms: 72 * 3_600_000,
            region: "US".into(),
            reply_validity_ms: 24 * 3_600_000,
        }
    }
}

impl ReplyRules {
    /// Add `words` for `keyword`. A word already taken keeps its first
    /// meaning, so the caller adds the lists in order of precedence.
    pub fn keyword<S: AsRef<str>>(mut self, keyword: Keyword, words: &[S]) -> Self {
        for w in words {
            self.keywords.entry(normalise(w.as_ref())).or_insert(keyword);
        }
        self.keywords.remove("");
        self
    }

    /// Add `words` for `intent`, first meaning kept as for keywords.
    pub fn intent<S: AsRef<str>>(mut self, intent: Intent, words: &[S]) -> Self {
        for w in words {
            self.intents.entry(normalise(w.as_ref())).or_insert(intent);
        }
        self.intents.remove("");
        self
    }

    /// What `text` means, read as a whole.
    pub fn read(&self, text: &str) -> Meaning {
        let word = normalise(text);
        if word.is_empty() {
            return Meaning::default();
        }
        let find = |w: &str| Meaning { keyword: self.keywords.get(w).copied(), intent: self.intents.get(w).copied() };
        let found = find(&word);
        // A word of Latin letters only is itself first ("STOP", "YES"),
        // then the Cyrillic word its letters may stand for ("HET": "НЕТ").
        if found == Meaning::default() && !word.chars().any(is_cyrillic) {
            return find(&fold(text, true));
        }
        found
    }
}

/// The form a text is compared in: letters and digits only (spaces,
/// punctuation and symbols anywhere are dropped, so " Стоп. ", "STOP!" and
/// "С Т О П" read alike), lower case, "ё" as "е"; in a word with any
/// Cyrillic letter, Latin look-alikes become the Cyrillic letters they look
/// like ("CTOП" is "стоп"). Empty for a text longer than one word could be.
pub fn normalise(text: &str) -> String {
    fold(text, text.chars().any(is_cyrillic))
}

/// `text` in letters and digits, lower case, "ё" as "е", with Latin
/// look-alikes as Cyrillic when `look_alikes`; empty past [`MAX_WORD`].
fn fold(text: &str, look_alikes: bool) -> String {
    let word: String = text
        .chars()
        .filter(|c| c.is_alphanumeric())
        .take(MAX_WORD + 1)
        .map(|c| if look_alikes { look_alike(c).unwrap_or(c) } else { c })
        .flat_map(char::to_lowercase)
        .map(|c| if c == 'ё' { 'е' } else { c })
        .collect();
    if word.chars().count() > MAX_WORD { String::new() } else { word }
}

fn is_cyrillic(c: char) -> bool {
    matches!(c, '\u{0400}'..='\u{04FF}' | '\u{0500}'..='\u{052F}')
}

/// The Cyrillic letter a Latin one is typed for, by its shape in that case.
fn look_alike(c: char) -> Option<char> {
    Some(match c {
        'A' => 'А',
        'B' => 'В',
        'C' => 'С',
        'E' => 'Е',
        'H' => 'Н',
        'K' => 'К',
        'M' => 'М',
        'O' => 'О',
        'P' => 'Р',
        'T' => 'Т',
        'X' => 'Х',
        'Y' => 'У',
        'a' => 'а',
        'c' => 'с',
        'e' => 'е',
        'k' => 'к',
        'o' => 'о',
        'p' => 'р',
        'x' => 'х',
        'y' => 'у',
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lists as the config's defaults give them (a subset is enough to
    /// show each rule).
    fn rules() -> ReplyRules {
        ReplyRules::default()
            .keyword(Keyword::OptoutAll, &["STOPALL", "СТОПВСЕ"])
            .keyword(Keyword::Optout, &["STOP", "СТОП", "ОТПИСКА", "ОТПИСАТЬСЯ", "UNSUBSCRIBE", "CANCEL", "ОТМЕНА"])
            .keyword(Keyword::Optin, &["START", "СТАРТ", "ПОДПИСАТЬСЯ"])
            .keyword(Keyword::Help, &["HELP", "ПОМОЩЬ", "INFO", "ИНФО"])
            .intent(Intent::Yes, &["ДА", "YES", "1", "Д", "Y", "OK", "ОК", "DA"])
            .intent(Intent::No, &["НЕТ", "NO", "2", "Н", "N", "NET"])
    }

    fn keyword(text: &str) -> Option<&'static str> {
        rules().read(text).keyword.map(Keyword::as_str)
    }

    fn intent(text: &str) -> Option<&'static str> {
        rules().read(text).intent.map(Intent::as_str)
    }

    #[test]
    fn stop_as_people_type_it() {
        for t in [
            "STOP",
            "stop",
            "Stop",
            "STOP!",
            " stop ",
            "stop.",
            "STOP!!!",
            "\"STOP\"",
            "Стоп.",
            " стоп ",
            "СТОП",
            "стоп!",
            "С Т О П",
            "с-т-о-п",
            "CTOП",
            "CТОП",
            "СTOП",
            "cтоп",
            "Cтоп",
            "СТОП\n",
            "\tСТОП 🛑",
            "отписка",
            "Отписаться",
            "ОТПИСАТЬСЯ!",
            "unsubscribe",
            "Cancel",
            "отмена",
            "OTMEHA",
        ] {
            assert_eq!(keyword(t), Some("optout"), "{t:?}");
        }
    }

    #[test]
    fn the_other_keywords() {
        for t in ["STOPALL", "stop all", "Stop All!", "СТОП ВСЕ", "стопвсё", "CTOП BCE"] {
            assert_eq!(keyword(t), Some("optout_all"), "{t:?}");
        }
        for t in ["START", "start", "Старт", "CTAPT", "подписаться!", "СТАРТ."] {
            assert_eq!(keyword(t), Some("optin"), "{t:?}");
        }
        for t in ["HELP", "help?", "Помощь", "ПОМОЩЬ!", "info", "Инфо", "ИHФO"] {
            assert_eq!(keyword(t), Some("help"), "{t:?}");
        }
    }

    #[test]
    fn yes_and_no() {
        for t in [
            "Да", "да", "ДА", "Да!", "да.", " Да ", "ДA", "дa", "Д", "д", "yes", "YES!", "Yes.", "y", "1", "OK", "ok",
            "Ок", "ОК", "da",
        ] {
            assert_eq!(intent(t), Some("yes"), "{t:?}");
        }
        for t in ["Нет", "нет!", "НЕТ", "HET", "нeт", "Н", "no", "No.", "NO!", "n", "2", "net"] {
            assert_eq!(intent(t), Some("no"), "{t:?}");
        }
    }

    #[test]
    fn ordinary_texts_mean_nothing() {
        for t in [
            "",
            "   ",
            "?!",
            "Да, но позже",
            "stop it",
            "не стоп",
            "Стоп-кран",
            "yes for A",
            "CTOP",
            "12",
            "Спасибо",
            "стоп стоп стоп стоп стоп стоп стоп стоп стоп стоп",
        ] {
            assert_eq!(rules().read(t), Meaning::default(), "{t:?}");
        }
    }

    #[test]
    fn a_word_in_two_lists_keeps_its_first_meaning_and_may_be_an_intent_too() {
        let r = ReplyRules::default()
            .keyword(Keyword::Optout, &["STOP"])
            .keyword(Keyword::Optin, &["stop", "ОК"])
            .intent(Intent::Yes, &["OK"]);
        assert_eq!(r.read("Stop").keyword, Some(Keyword::Optout));
        // "OK" in Latin is "ок" in look-alikes: both meanings.
        assert_eq!(r.read("ОК"), Meaning { keyword: Some(Keyword::Optin), intent: None });
        assert_eq!(r.read("OK"), Meaning { keyword: None, intent: Some(Intent::Yes) });
    }

    #[test]
    fn normal_form() {
        assert_eq!(normalise("  Ёлки-Палки! "), "елкипалки");
        assert_eq!(normalise("CTOП"), "стоп");
        assert_eq!(normalise("STOP"), "stop");
        assert_eq!(normalise(&"a".repeat(MAX_WORD)), "a".repeat(MAX_WORD));
        assert_eq!(normalise(&"a".repeat(MAX_WORD + 1)), "");
    }
}
