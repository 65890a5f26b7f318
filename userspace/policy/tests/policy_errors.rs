//! Invalid policy files: every error names origin:line:column as computed by
//! the `toml` crate.

use dbwarden_policy::{Policy, PolicyError};

const HEAD: &str = "[policy]\nname = \"bad\"\ndefault = \"deny\"\n\n[[rule]]\nname = \"r\"\n";

fn err(body: &str) -> PolicyError {
    Policy::parse(&format!("{HEAD}{body}"), "policies/bad.toml").expect_err("must be rejected")
}

fn prefix(e: &PolicyError) -> String {
    let s = e.to_string();
    let mut parts = s.splitn(4, ':');
    format!(
        "{}:{}:{}",
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap()
    )
}

#[test]
fn unknown_key_in_identity() {
    let e = err("action = \"deny\"\n[rule.identity]\ncgroups = [\"/x\"]\n");
    assert_eq!(prefix(&e), "policies/bad.toml:9:1", "{e}");
    assert!(e.to_string().contains("unknown field `cgroups`"), "{e}");
}

#[test]
fn unknown_top_level_key() {
    let e = Policy::parse(
        "[policy]\nname = \"x\"\ndefault = \"allow\"\n[rules]\n",
        "p",
    )
    .unwrap_err();
    assert_eq!(prefix(&e), "p:4:2", "{e}"); // the key inside `[rules]`
}

#[test]
fn bad_action_value() {
    let e = err("action = \"permit\"\n");
    assert_eq!(prefix(&e), "policies/bad.toml:7:10", "{e}");
}

#[test]
fn bad_default_action() {
    let e = Policy::parse("[policy]\nname = \"x\"\ndefault = \"tag\"\n", "p").unwrap_err();
    assert_eq!(prefix(&e), "p:3:11", "{e}");
    assert!(e.to_string().contains("unknown variant `tag`"), "{e}");
}

#[test]
fn bad_kind_and_glob_point_at_their_list() {
    let e = err("action = \"deny\"\nkind = [\"select\",\n  \"selekt\"]\n");
    assert_eq!(prefix(&e), "policies/bad.toml:8:8", "{e}");
    assert!(e.to_string().contains("\"selekt\" (element 2"), "{e}");
    let e = err("action = \"deny\"\nfunctions = [\"a{b\"]\n");
    assert_eq!(prefix(&e), "policies/bad.toml:8:13", "{e}");
    let e = err("action = \"deny\"\ntables = [\"a..b\"]\n");
    assert!(e.to_string().contains("empty part"), "{e}");
}

#[test]
fn wrong_types() {
    let e = err("action = \"deny\"\nkind = \"select\"\n");
    assert_eq!(prefix(&e), "policies/bad.toml:8:8", "{e}");
    let e = err("action = \"require_approval\"\ntimeout = -5\n");
    assert_eq!(prefix(&e), "policies/bad.toml:8:11", "{e}");
    let e = err("action = \"deny\"\nwhere_less = \"yes\"\n");
    assert_eq!(prefix(&e), "policies/bad.toml:8:14", "{e}");
}

#[test]
fn toml_syntax_error_with_non_ascii_before_it() {
    // Columns count characters, not bytes (computed by the toml crate).
    let e = Policy::parse("[policy]\nname = \"é\" x\n", "p").unwrap_err();
    assert_eq!(prefix(&e), "p:2:12", "{e}");
}

#[test]
fn tag_rule_needs_tags() {
    let e = err("action = \"tag\"\n");
    assert!(e.to_string().contains("needs a non-empty `tags`"), "{e}");
    assert!(e.location().is_some());
}
