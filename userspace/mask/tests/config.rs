//! Parsing of the `[masking]` table: defaults, the shipped PCI section, and error locations.

use dbwarden_mask::{Detector, MaskConfig, Masker, Strategy};

#[test]
fn missing_table_is_safe_default() {
    let src = "[rules]\nfoo = 1\n[[deny]]\nx = \"y\"\n";
    let cfg = MaskConfig::from_policy_toml(src, "p.toml").expect("parses");
    assert_eq!(
        cfg.detectors,
        vec![Detector::Pan, Detector::Ssn, Detector::Iban]
    );
    assert!(cfg.builtin_column_rules);
    let m = Masker::new(&cfg, [0; 32]).expect("masker");
    assert_eq!(m.mask_str("4111111111111111"), "************1111");
    assert_eq!(m.mask_str("ssn 123-45-6789"), "ssn ***-**-****");
    assert_eq!(
        m.mask_str("a@example.com"),
        "a@example.com",
        "email is off by default"
    );
    assert_eq!(
        m.column_rule(Some("payments"), "cvv"),
        Some(Strategy::Redact)
    );
    assert_eq!(m.column_rule(None, "Card_Number"), Some(Strategy::Last4));
}

#[test]
fn shipped_pci_section_parses() {
    let src = include_str!("../pci-masking.toml");
    let cfg = MaskConfig::from_policy_toml(src, "pci-masking.toml").expect("parses");
    let m = Masker::new(&cfg, [9; 32]).expect("masker");
    assert!(cfg.detectors.contains(&Detector::Email));
    assert_eq!(m.column_rule(None, "card_expiry"), Some(Strategy::Redact));
    assert_eq!(m.column_rule(None, "cvc2"), Some(Strategy::Redact));
    let out = m.mask_str("mail bob@example.com");
    assert!(out.starts_with("mail hmac:"), "{out}");
    // Embedded in a larger policy document with other top-level tables.
    let doc = format!("[policy]\nname = \"pci\"\n\n{src}\n[[rules]]\nkind = \"deny\"\n");
    assert_eq!(
        MaskConfig::from_policy_toml(&doc, "x")
            .expect("parses")
            .detectors,
        cfg.detectors
    );
}

#[test]
fn full_schema() {
    let src = r#"
[masking]
detectors = ["pan", "email"]
default_strategy = "redact"
builtin_column_rules = false
[masking.strategies]
email = "hmac"
[[masking.columns]]
column = "*card_number*"
table = "orders"
strategy = "last4"
[[masking.custom]]
name = "employee-id"
regex = "EMP-[0-9]{6}"
"#;
    let cfg = MaskConfig::from_policy_toml(src, "p.toml").expect("parses");
    let m = Masker::new(&cfg, [0; 32]).expect("masker");
    assert_eq!(
        m.column_rule(Some("orders"), "card_number"),
        Some(Strategy::Last4)
    );
    assert_eq!(m.column_rule(Some("users"), "card_number"), None);
    assert_eq!(m.column_rule(None, "cvv"), None, "built-ins disabled");
    assert_eq!(m.mask_str("id EMP-123456."), "id ***-******.");
    assert_eq!(m.mask_str("4111111111111111"), "****************");
}

fn err(src: &str) -> String {
    MaskConfig::from_policy_toml(src, "policy.toml")
        .expect_err("must fail")
        .to_string()
}

#[test]
fn errors_have_line_and_column() {
    assert_eq!(
        err("[other]\nx = 1\n[masking]\ndetectors = [\"pan\", \"cvv\"]\n")
            .split(": ")
            .next(),
        Some("policy.toml:4:21")
    );
    let e = err("[masking]\nbogus = 1\n");
    assert!(e.starts_with("policy.toml:2:1: "), "{e}");
    assert!(e.contains("bogus"), "{e}");
    let e = err("[masking]\ndefault_strategy = \"shred\"\n");
    assert!(e.starts_with("policy.toml:2:20: "), "{e}");
    let e = err("[masking]\n[[masking.custom]]\nname = \"x\"\nregex = \"(unclosed\"\n");
    assert!(e.starts_with("policy.toml:4:9: "), "{e}");
    assert!(e.contains("invalid regex"), "{e}");
    let e = err("[[masking.custom]]\nname = \"x\"\nregex = \"a*\"\n");
    assert!(e.contains("empty string"), "{e}");
    let e = err("[[masking.custom]]\nname = \"pan\"\nregex = \"a\"\n");
    assert!(e.starts_with("policy.toml:2:8: "), "{e}");
    let e = err("[[masking.columns]]\ncolumn = \"\"\nstrategy = \"null\"\n");
    assert!(e.starts_with("policy.toml:2:10: "), "{e}");
    let e = err("[[masking.columns]]\ncolumn = \"a\"\nstrategy = \"null\"\nfoo = 2\n");
    assert!(e.starts_with("policy.toml:4:1: "), "{e}");
    let e = err("[masking\n");
    assert!(e.starts_with("policy.toml:1:"), "{e}");
}
