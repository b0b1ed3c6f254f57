//! Captions from the narration: one cue per sentence, at most two lines of 42 characters
//! (a longer sentence becomes several cues), timed from the synthesized audio.
//!
//! The TTS stage speaks every sentence on its own ([`sentences`]), so each sentence's start
//! and end are exact sample counts; a sentence split into several cues shares its time
//! among them by their characters. [`to_vtt`] writes WebVTT, the file published beside the
//! film and muxed into it as a `mov_text` track (language from [`iso639_2`]).

/// Characters per caption line (the usual broadcast limit).
pub const MAX_LINE_CHARS: usize = 42;
/// Lines per cue.
pub const MAX_LINES: usize = 2;

/// Splits narration into sentences: after `.`, `!`, `?`, `…` and their full-width forms when
/// followed by a space or the end, and at line breaks. Each keeps its punctuation; blank
/// ones are dropped. A number like `3.5` is not split.
pub fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\n' {
            push_sentence(&mut out, &mut current);
            continue;
        }
        current.push(c);
        let ends = matches!(c, '.' | '!' | '?' | '…' | '。' | '！' | '？');
        if ends {
            // Closing quotes and brackets stay with their sentence.
            while let Some(&next) = chars.peek() {
                if matches!(next, '"' | '\'' | ')' | '”' | '’' | '」' | '.' | '!' | '?') {
                    current.push(next);
                    chars.next();
                } else {
                    break;
                }
            }
            let full_width = matches!(c, '。' | '！' | '？');
            // "e.g. the", "vs. a": a full stop followed by a word in lower case is an
            // abbreviation, not the end of a sentence.
            let abbreviation = c == '.' && {
                let mut ahead = chars.clone().skip_while(|n| *n == ' ');
                ahead.next().is_some_and(char::is_lowercase)
            };
            if full_width || (!abbreviation && chars.peek().is_none_or(|n| n.is_whitespace())) {
                push_sentence(&mut out, &mut current);
            }
        }
    }
    push_sentence(&mut out, &mut current);
    out
}

fn push_sentence(out: &mut Vec<String>, current: &mut String) {
    let sentence = current.split_whitespace().collect::<Vec<_>>().join(" ");
    if sentence.chars().any(char::is_alphanumeric) {
        out.push(sentence);
    } else if let Some(last) = out.last_mut()
        && !sentence.is_empty()
    {
        // Stray punctuation belongs to the sentence before it.
        last.push_str(&sentence);
    }
    current.clear();
}

/// Wraps `text` at spaces into lines of at most [`MAX_LINE_CHARS`] characters; a word
/// longer than a line (or a script written without spaces) is broken inside.
pub fn wrap(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    let mut len = 0;
    for word in text.split_whitespace() {
        let mut word: Vec<char> = word.chars().collect();
        if len > 0 && len + 1 + word.len() <= MAX_LINE_CHARS {
            line.push(' ');
            line.extend(&word);
            len += 1 + word.len();
            continue;
        }
        if len > 0 {
            lines.push(std::mem::take(&mut line));
        }
        while word.len() > MAX_LINE_CHARS {
            let rest = word.split_off(MAX_LINE_CHARS);
            lines.push(word.iter().collect());
            word = rest;
        }
        len = word.len();
        line = word.into_iter().collect();
    }
    if len > 0 {
        lines.push(line);
    }
    lines
}

/// A sentence's cue texts: as few cues of at most [`MAX_LINES`] lines as hold it, the words
/// shared evenly among them (so a long sentence does not end in a cue of one orphan word).
pub fn cue_texts(sentence: &str) -> Vec<String> {
    let lines = wrap(sentence);
    let words: Vec<&str> = sentence.split_whitespace().collect();
    let total: usize = words.iter().map(|w| w.chars().count() + 1).sum();
    for n in lines.len().div_ceil(MAX_LINES).max(1)..lines.len() {
        // Each word goes to the cue its middle falls in.
        let mut groups: Vec<Vec<&str>> = vec![Vec::new(); n];
        let mut at = 0;
        for word in &words {
            let len = word.chars().count() + 1;
            let cue = ((2 * at + len) * n / (2 * total.max(1))).min(n - 1);
            groups[cue].push(word);
            at += len;
        }
        let wrapped: Vec<Vec<String>> = groups
            .iter()
            .filter(|g| !g.is_empty())
            .map(|g| wrap(&g.join(" ")))
            .collect();
        if wrapped.iter().all(|l| l.len() <= MAX_LINES) {
            return wrapped.into_iter().map(|l| l.join("\n")).collect();
        }
    }
    // A line per cue pair always fits (long words broken inside).
    lines.chunks(MAX_LINES).map(|g| g.join("\n")).collect()
}

/// One caption: its text (one or two lines joined by `\n`) and when it shows, in samples
/// from the start of the narration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cue {
    /// First sample.
    pub start: u64,
    /// One past the last sample.
    pub end: u64,
    /// The lines, joined by `\n`.
    pub text: String,
}

/// Cues for spoken sentences given as `(text, samples)` in order: each sentence starts where
/// the one before it ended; one spread over several cues shares its samples among them by
/// their characters (the last cue ends exactly at the sentence's end).
pub fn cues(spoken: &[(String, u64)]) -> Vec<Cue> {
    let mut out = Vec::new();
    let mut at = 0u64;
    for (text, samples) in spoken {
        let groups = cue_texts(text);
        let weights: Vec<u64> = groups
            .iter()
            .map(|g| g.chars().count().max(1) as u64)
            .collect();
        let total: u64 = weights.iter().sum();
        let mut used = 0u64;
        let mut before = 0u64;
        for (group, weight) in groups.into_iter().zip(weights) {
            before += weight;
            // Cumulative, like the frame counts: rounding never accumulates.
            let upto = u64::try_from(
                (u128::from(*samples) * u128::from(before)) / u128::from(total.max(1)),
            )
            .unwrap_or(*samples);
            // A cue of no time is shown by no player (and refused by some); its words got no
            // audio either, so there is nothing to caption.
            if upto > used {
                out.push(Cue {
                    start: at + used,
                    end: at + upto,
                    text: group,
                });
            }
            used = upto;
        }
        at += samples;
    }
    out
}

/// A time in WebVTT's form, `HH:MM:SS.mmm`, from a sample count (rounded to the nearest
/// millisecond).
pub fn timestamp(samples: u64, sample_rate: u32) -> String {
    let rate = u128::from(sample_rate.max(1));
    let ms = (u128::from(samples) * 1000 * 2 + rate) / (rate * 2);
    let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, ms) = (rest / 1000, rest % 1000);
    format!("{h:02}:{m:02}:{s:02}.{ms:03}")
}

/// The cues as a WebVTT file. Text is escaped (`&`, `<`, `>`), so narration is never markup.
pub fn to_vtt(cues: &[Cue], sample_rate: u32) -> String {
    let mut out = String::from("WEBVTT\n");
    for (i, cue) in cues.iter().enumerate() {
        let text = cue
            .text
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        out.push_str(&format!(
            "\n{}\n{} --> {}\n{text}\n",
            i + 1,
            timestamp(cue.start, sample_rate),
            timestamp(cue.end, sample_rate),
        ));
    }
    out
}

/// The ISO 639-2 code of a storyboard language tag (`en-us` → `eng`, `ko` → `kor`), for
/// the subtitle track's language; `und` when unknown.
pub fn iso639_2(language: &str) -> &'static str {
    let primary = language.split('-').next().unwrap_or_default();
    match primary.to_ascii_lowercase().as_str() {
        "en" | "eng" => "eng",
        "ko" | "kor" => "kor",
        "ja" | "jpn" => "jpn",
        "zh" | "zho" | "chi" | "cmn" | "yue" => "zho",
        "fr" | "fra" | "fre" => "fra",
        "de" | "deu" | "ger" => "deu",
        "es" | "spa" => "spa",
        "it" | "ita" => "ita",
        "pt" | "por" => "por",
        "ru" | "rus" => "rus",
        "ar" | "ara" => "ara",
        "he" | "heb" => "heb",
        "hi" | "hin" => "hin",
        "nl" | "nld" | "dut" => "nld",
        "sv" | "swe" => "swe",
        "pl" | "pol" => "pol",
        "tr" | "tur" => "tur",
        "vi" | "vie" => "vie",
        "id" | "ind" => "ind",
        "uk" | "ukr" => "ukr",
        "el" | "ell" | "gre" => "ell",
        _ => "und",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narration_splits_into_sentences_but_not_inside_numbers() {
        assert_eq!(
            sentences("Half is 0.5 of a whole. Is it? Yes!\nNext line"),
            ["Half is 0.5 of a whole.", "Is it?", "Yes!", "Next line"]
        );
        assert_eq!(
            sentences("He said \"stop.\" Then   went."),
            ["He said \"stop.\"", "Then went."]
        );
        assert_eq!(sentences("光合作用。植物"), ["光合作用。", "植物"]);
        assert_eq!(
            sentences("광합성은 중요합니다. 식물은 빛을 씁니다."),
            ["광합성은 중요합니다.", "식물은 빛을 씁니다."]
        );
        assert!(sentences("  ... ").is_empty());
    }

    #[test]
    fn an_abbreviation_before_a_lower_case_word_does_not_end_a_sentence() {
        assert_eq!(
            sentences("Use a common denominator, e.g. six. Then add."),
            ["Use a common denominator, e.g. six.", "Then add."]
        );
        assert_eq!(
            sentences("Halves vs. thirds. Which is larger?"),
            ["Halves vs. thirds.", "Which is larger?"]
        );
    }

    #[test]
    fn a_sentence_without_audio_gets_no_cue_of_zero_length() {
        let spoken = vec![
            ("Spoken.".to_owned(), 800),
            ("Silent.".to_owned(), 0),
            ("Spoken again.".to_owned(), 1200),
        ];
        let cues = cues(&spoken);
        assert_eq!(cues.len(), 2, "{cues:?}");
        assert!(cues.iter().all(|c| c.start < c.end), "{cues:?}");
        assert_eq!((cues[1].start, cues[1].end), (800, 2000));
    }

    #[test]
    fn lines_wrap_at_words_within_42_characters() {
        let text = "A fraction names a part of a whole, and the bottom number says how many equal parts there are in all.";
        let lines = wrap(text);
        assert!(lines.len() >= 3, "{lines:?}");
        for line in &lines {
            assert!(line.chars().count() <= MAX_LINE_CHARS, "{line:?}");
            assert_eq!(line.trim(), line);
        }
        assert_eq!(lines.join(" "), text);
        let long = "x".repeat(100);
        assert_eq!(
            wrap(&long).iter().map(|l| l.len()).collect::<Vec<_>>(),
            [42, 42, 16]
        );
    }

    #[test]
    fn a_three_line_sentence_is_two_even_cues_not_one_and_an_orphan() {
        let text = "Now we rewrite one half as three sixths, by multiplying the top and the bottom by three.";
        assert_eq!(wrap(text).len(), 3);
        let cues = cue_texts(text);
        assert_eq!(cues.len(), 2, "{cues:?}");
        let words = |c: &String| c.split_whitespace().count();
        assert!(words(&cues[0]).abs_diff(words(&cues[1])) <= 2, "{cues:?}");
        assert_eq!(cues.join(" ").replace('\n', " "), text);
        assert_eq!(cue_texts("Short."), ["Short."]);
        let long = "y".repeat(200);
        for cue in cue_texts(&long) {
            assert!(cue.lines().all(|l| l.chars().count() <= MAX_LINE_CHARS));
            assert!(cue.lines().count() <= MAX_LINES);
        }
    }

    #[test]
    fn a_long_sentence_becomes_several_cues_that_end_with_it() {
        let long = "word ".repeat(40);
        let spoken = vec![
            ("Short one.".to_owned(), 1000),
            (long.trim().to_owned(), 9001),
        ];
        let cues = cues(&spoken);
        assert_eq!(cues[0].start, 0);
        assert_eq!(cues[0].end, 1000);
        assert!(cues.len() >= 3, "{cues:?}");
        assert_eq!(cues[1].start, 1000);
        assert_eq!(cues.last().unwrap().end, 10_001);
        for pair in cues.windows(2) {
            assert_eq!(pair[0].end, pair[1].start);
        }
        for cue in &cues {
            assert!(cue.start < cue.end);
            assert!(cue.text.lines().count() <= MAX_LINES);
        }
    }

    #[test]
    fn vtt_has_a_header_escaped_text_and_millisecond_times() {
        assert_eq!(timestamp(22_050 * 3723 + 11_025, 22_050), "01:02:03.500");
        let vtt = to_vtt(
            &[Cue {
                start: 0,
                end: 22_050,
                text: "1 < 2 & 3 > 2".into(),
            }],
            22_050,
        );
        assert_eq!(
            vtt,
            "WEBVTT\n\n1\n00:00:00.000 --> 00:00:01.000\n1 &lt; 2 &amp; 3 &gt; 2\n"
        );
        assert_eq!(iso639_2("en-us"), "eng");
        assert_eq!(iso639_2("ko"), "kor");
        assert_eq!(iso639_2("xx"), "und");
    }
}
