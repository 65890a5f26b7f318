//! Run-time parameters a startup packet sets: its own `name value` pairs plus those inside
//! `options` (`-c name=value`, `-cname=value`, `--name=value`), split the way the server splits
//! them (`pg_split_opts`: ASCII whitespace separates, a backslash makes the next character
//! literal).

/// Every (name, value) the startup parameters set, `options` expanded; names lowercased.
/// Parameters other than `options` that are not settings (`user`, `database`, `replication`)
/// are included too: callers look up what they care about.
pub fn startup_settings(params: &[(String, String)]) -> Vec<(String, String)> {
    parse_startup(params).settings
}

/// What a startup packet asks for: its settings, and the words of `options` that are not
/// settings (server switches such as `-P`, `-d 5`, `-W 30`, or a dangling `-c`), which the
/// server would apply too.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StartupRequest {
    /// Every (name, value) set, as [`startup_settings`] returns them.
    pub settings: Vec<(String, String)>,
    /// Words of `options` that are neither `-c name=value` nor `--name=value`.
    pub other_options: Vec<String>,
}

/// Splits the startup parameters into [`StartupRequest`].
pub fn parse_startup(params: &[(String, String)]) -> StartupRequest {
    let mut out = StartupRequest::default();
    for (k, v) in params {
        if k == "options" {
            let words = split_opts(v);
            let mut i = 0;
            while i < words.len() {
                let w = &words[i];
                let kv = if w == "-c" {
                    i += 1;
                    words.get(i).map(String::as_str)
                } else if let Some(rest) = w.strip_prefix("--") {
                    Some(rest)
                } else {
                    w.strip_prefix("-c")
                };
                match kv.and_then(|s| s.split_once('=')) {
                    // The server treats '-' in option names as '_' (ParseLongOption).
                    Some((n, val)) => out
                        .settings
                        .push((n.replace('-', "_").to_ascii_lowercase(), val.to_owned())),
                    None => out.other_options.push(match kv {
                        Some(kv) if w == "-c" => format!("-c {kv}"),
                        _ => w.clone(),
                    }),
                }
                i += 1;
            }
        } else {
            out.settings.push((k.to_ascii_lowercase(), v.clone()));
        }
    }
    out
}

fn split_opts(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c.is_ascii_whitespace() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
        } else if c == '\\' {
            if let Some(n) = chars.next() {
                cur.push(n);
            }
        } else {
            cur.push(c);
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(k: &str, v: &str) -> (String, String) {
        (k.to_owned(), v.to_owned())
    }

    #[test]
    fn options_are_expanded_like_the_server_does() {
        let s = startup_settings(&[
            p("user", "app"),
            p("client_encoding", "UTF8"),
            p(
                "options",
                "-c client_encoding=SJIS  -cstandard_conforming_strings=off --search-path=a\\ b -c",
            ),
        ]);
        assert!(s.contains(&p("client_encoding", "UTF8")));
        assert!(s.contains(&p("client_encoding", "SJIS")));
        assert!(s.contains(&p("standard_conforming_strings", "off")));
        assert!(s.contains(&p("search_path", "a b")));
        assert!(s.contains(&p("user", "app")));
    }

    #[test]
    fn other_switches_are_reported() {
        let r = parse_startup(&[p("options", "-P -d 5 -c work_mem=1MB -c nope --x")]);
        assert_eq!(r.settings, vec![p("work_mem", "1MB")]);
        assert_eq!(r.other_options, ["-P", "-d", "5", "-c nope", "--x"]);
        let r = parse_startup(&[p("options", "-c")]);
        assert_eq!(r.other_options, ["-c"]);
    }
}
