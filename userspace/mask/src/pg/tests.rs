use super::*;
use crate::MaskConfig;

fn masker() -> Masker {
    let cfg = MaskConfig::from_policy_toml(
        "[masking]\ndetectors = [\"pan\", \"ssn\", \"iban\", \"email\"]\n",
        "t.toml",
    )
    .expect("config");
    Masker::new(&cfg, [3; 32]).expect("masker")
}

const PAN: i64 = 4_111_111_111_111_111;

fn replaced(r: Result<MaskedValue, MaskError>) -> Vec<u8> {
    match r.expect("mask ok") {
        MaskedValue::Replaced(v) => v,
        other => panic!("expected Replaced, got {other:?}"),
    }
}

#[test]
fn int8_binary_content_and_rules() {
    let m = masker();
    let v = PAN.to_be_bytes();
    let out = replaced(mask_value(&m, oid::INT8, true, &v, None));
    assert_eq!(i64::from_be_bytes(out.try_into().expect("8 bytes")), 1111);
    let r = Some(&Strategy::Redact);
    let out = replaced(mask_value(&m, oid::INT8, true, &v, r));
    assert_eq!(out, 0i64.to_be_bytes());
    let out = replaced(mask_value(&m, oid::INT8, true, &v, Some(&Strategy::Hash)));
    let h = i64::from_be_bytes(out.try_into().expect("8 bytes"));
    assert!(h >= 0 && h != PAN);
    assert_eq!(
        mask_value(&m, oid::INT8, true, &12345i64.to_be_bytes(), None),
        Ok(MaskedValue::Unchanged)
    );
    assert_eq!(
        mask_value(&m, oid::INT8, true, &v, Some(&Strategy::Null)),
        Ok(MaskedValue::Null)
    );
    assert!(mask_value(&m, oid::INT8, true, &[1, 2, 3], None).is_err());
}

#[test]
fn int4_int2_rules() {
    let m = masker();
    let out = replaced(mask_value(
        &m,
        oid::INT4,
        true,
        &987i32.to_be_bytes(),
        Some(&Strategy::Redact),
    ));
    assert_eq!(out, 0i32.to_be_bytes());
    let out = replaced(mask_value(
        &m,
        oid::INT2,
        true,
        &(-4321i16).to_be_bytes(),
        Some(&Strategy::Last4),
    ));
    assert_eq!(out, (-4321i16).to_be_bytes());
    let out = replaced(mask_value(
        &m,
        oid::INT2,
        true,
        &321i16.to_be_bytes(),
        Some(&Strategy::Hash),
    ));
    assert_eq!(out.len(), 2);
    let out = replaced(mask_value(
        &m,
        oid::INT4,
        false,
        b"123",
        Some(&Strategy::Redact),
    ));
    assert_eq!(out, b"0");
}

#[test]
fn int_text_uses_digits() {
    let m = masker();
    let out = replaced(mask_value(&m, oid::INT8, false, b"4111111111111111", None));
    assert_eq!(out, b"1111");
    let n: i64 = std::str::from_utf8(&out)
        .expect("ascii")
        .parse()
        .expect("int");
    assert_eq!(n, 1111);
}

fn numeric_bin(text: &str, dscale: u16) -> Vec<u8> {
    numeric::encode_text(text, dscale).expect("encode")
}

fn numeric_text(v: &[u8]) -> String {
    numeric::decode(v)
        .expect("decode")
        .to_text()
        .expect("finite")
}

#[test]
fn numeric_binary_and_text() {
    let m = masker();
    let out = replaced(mask_value(
        &m,
        oid::NUMERIC,
        true,
        &numeric_bin("4111111111111111.00", 2),
        None,
    ));
    assert_eq!(numeric_text(&out), "1111.00");
    let out = replaced(mask_value(
        &m,
        oid::NUMERIC,
        true,
        &numeric_bin("-4111111111111111", 0),
        Some(&Strategy::Redact),
    ));
    assert_eq!(numeric_text(&out), "0");
    let out = replaced(mask_value(
        &m,
        oid::NUMERIC,
        true,
        &numeric_bin("12345678.91", 2),
        Some(&Strategy::Last4),
    ));
    assert_eq!(numeric_text(&out), "5678.00");
    assert_eq!(
        mask_value(&m, oid::NUMERIC, true, &numeric_bin("19.99", 2), None),
        Ok(MaskedValue::Unchanged)
    );
    let out = replaced(mask_value(
        &m,
        oid::NUMERIC,
        false,
        b"4111111111111111.50",
        None,
    ));
    assert_eq!(out, b"0000000000001111.50");
    assert!(mask_value(&m, oid::NUMERIC, true, &[0, 1, 0, 0], None).is_err());
}

#[test]
fn floats() {
    let m = masker();
    #[expect(clippy::cast_precision_loss, reason = "PAN exactly representable")]
    let f = PAN as f64;
    let out = replaced(mask_value(&m, oid::FLOAT8, true, &f.to_be_bytes(), None));
    assert_eq!(f64::from_be_bytes(out.try_into().expect("8")), 1111.0);
    let out = replaced(mask_value(
        &m,
        oid::FLOAT8,
        false,
        b"4.111111111111111e+15",
        None,
    ));
    assert_eq!(out, b"1111");
    let out = replaced(mask_value(
        &m,
        oid::FLOAT4,
        true,
        &12.5f32.to_be_bytes(),
        Some(&Strategy::Redact),
    ));
    assert_eq!(f32::from_be_bytes(out.try_into().expect("4")), 0.0);
    assert_eq!(
        mask_value(&m, oid::FLOAT8, true, &2.5f64.to_be_bytes(), None),
        Ok(MaskedValue::Unchanged)
    );
}

#[test]
fn text_types() {
    let m = masker();
    for t in [oid::TEXT, oid::VARCHAR, oid::BPCHAR, oid::NAME] {
        for binary in [false, true] {
            let out = replaced(mask_value(
                &m,
                t,
                binary,
                b"card 4111-1111-1111-1111 x",
                None,
            ));
            assert_eq!(out, b"card ****-****-****-1111 x");
        }
    }
    let out = replaced(mask_value(
        &m,
        oid::BPCHAR,
        false,
        b"123 ",
        Some(&Strategy::Hash),
    ));
    assert_eq!(out.len(), 4);
    let out = replaced(mask_value(
        &m,
        oid::TEXT,
        false,
        b"123",
        Some(&Strategy::Redact),
    ));
    assert_eq!(out, b"***");
    assert!(mask_value(&m, oid::TEXT, true, &[0xFF, 0xFE], None).is_err());
}

#[test]
fn bytea_formats() {
    let m = masker();
    let raw = b"\x00\x01pan=4111111111111111\xff";
    let out = replaced(mask_value(&m, oid::BYTEA, true, raw, None));
    assert_eq!(out, b"\x00\x01pan=************1111\xff");
    let hex = encode_bytea_text(raw, ByteaForm::Hex);
    let out = replaced(mask_value(&m, oid::BYTEA, false, &hex, None));
    assert!(out.starts_with(b"\\x"));
    let (dec, _) = decode_bytea_text(&out).expect("decodes");
    assert_eq!(dec, b"\x00\x01pan=************1111\xff");
    let esc = encode_bytea_text(raw, ByteaForm::Escape);
    let out = replaced(mask_value(&m, oid::BYTEA, false, &esc, None));
    let (dec, form) = decode_bytea_text(&out).expect("decodes");
    assert_eq!(form, ByteaForm::Escape);
    assert_eq!(dec, b"\x00\x01pan=************1111\xff");
    assert!(mask_value(&m, oid::BYTEA, false, b"\\x4", None).is_err());
}

#[test]
fn json_and_jsonb() {
    let m = masker();
    let doc = br#"{"pan": "4111 1111 1111 1111", "n": 4111111111111111, "m": -5555555555554444.5}"#;
    let out = replaced(mask_value(&m, oid::JSON, false, doc, None));
    assert_eq!(
        out,
        br#"{"pan": "**** **** **** 1111", "n": 1111, "m": -4444.5}"#.to_vec()
    );
    let mut bin = vec![1u8];
    bin.extend_from_slice(doc);
    let out = replaced(mask_value(&m, oid::JSONB, true, &bin, None));
    assert_eq!(out[0], 1);
    assert_eq!(
        &out[1..],
        br#"{"pan": "**** **** **** 1111", "n": 1111, "m": -4444.5}"#
    );
    assert!(mask_value(&m, oid::JSONB, true, b"\x02{}", None).is_err());
    let out = replaced(mask_value(
        &m,
        oid::JSON,
        false,
        br#"{"cvv":"1\"2"}"#,
        Some(&Strategy::Redact),
    ));
    assert!(out.starts_with(b"\"") && out.ends_with(b"\""));
}

fn bin_array(elem: u32, elems: &[Option<&[u8]>]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&1i32.to_be_bytes());
    v.extend_from_slice(&i32::from(elems.iter().any(Option::is_none)).to_be_bytes());
    v.extend_from_slice(&elem.to_be_bytes());
    v.extend_from_slice(&i32::try_from(elems.len()).expect("len").to_be_bytes());
    v.extend_from_slice(&1i32.to_be_bytes());
    for e in elems {
        match e {
            None => v.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(d) => {
                v.extend_from_slice(&i32::try_from(d.len()).expect("len").to_be_bytes());
                v.extend_from_slice(d);
            }
        }
    }
    v
}

#[test]
fn binary_arrays() {
    let m = masker();
    let pan = PAN.to_be_bytes();
    let small = 7i64.to_be_bytes();
    let arr = bin_array(oid::INT8, &[Some(&pan), None, Some(&small)]);
    let out = replaced(mask_value(&m, oid::INT8_ARRAY, true, &arr, None));
    let expect = bin_array(
        oid::INT8,
        &[Some(&1111i64.to_be_bytes()), None, Some(&small)],
    );
    assert_eq!(out, expect);
    let arr = bin_array(oid::TEXT, &[Some(b"a"), Some(b"4111 1111 1111 1111")]);
    let out = replaced(mask_value(&m, oid::TEXT_ARRAY, true, &arr, None));
    assert_eq!(
        out,
        bin_array(oid::TEXT, &[Some(b"a"), Some(b"**** **** **** 1111")])
    );
}

#[test]
fn binary_array_null_rule_per_element_and_malformed() {
    let m = masker();
    assert_eq!(
        mask_value(
            &m,
            oid::TEXT_ARRAY,
            true,
            &bin_array(oid::TEXT, &[Some(b"x")]),
            Some(&Strategy::Null)
        ),
        Ok(MaskedValue::Null)
    );
    let mut arr = bin_array(oid::TEXT, &[Some(b"x")]);
    arr.push(0);
    assert!(mask_value(&m, oid::TEXT_ARRAY, true, &arr, None).is_err());
    let mut huge = bin_array(oid::TEXT, &[]);
    huge[12..16].copy_from_slice(&i32::MAX.to_be_bytes());
    assert!(mask_value(&m, oid::TEXT_ARRAY, true, &huge, None).is_err());
    let arr = bin_array(oid::TEXT, &[Some(b"4111111111111111")]);
    let out = replaced(mask_value(
        &m,
        oid::TEXT_ARRAY,
        true,
        &arr,
        Some(&Strategy::Redact),
    ));
    assert_eq!(out, bin_array(oid::TEXT, &[Some(b"****************")]));
}

#[test]
fn text_arrays() {
    let m = masker();
    let out = replaced(mask_value(
        &m,
        oid::INT8_ARRAY,
        false,
        b"{4111111111111111,7,NULL}",
        None,
    ));
    assert_eq!(out, b"{\"1111\",7,NULL}");
    let out = replaced(mask_value(
        &m,
        oid::TEXT_ARRAY,
        false,
        br#"{"4111 1111 1111 1111","a\"b",x}"#,
        None,
    ));
    assert_eq!(out, br#"{"**** **** **** 1111","a\"b",x}"#.to_vec());
    let out = replaced(mask_value(
        &m,
        oid::TEXT_ARRAY,
        false,
        b"{{a,b},{c,d}}",
        Some(&Strategy::Redact),
    ));
    assert_eq!(out, br#"{{"*","*"},{"*","*"}}"#.to_vec());
    assert!(mask_value(&m, oid::TEXT_ARRAY, false, b"{a,b", None).is_err());
    assert!(mask_value(&m, oid::TEXT_ARRAY, false, b"a,b}", None).is_err());
}

#[test]
fn structured_and_unknown() {
    let m = masker();
    assert_eq!(
        mask_value(&m, oid::UUID, true, &[0; 16], None),
        Ok(MaskedValue::Unchanged)
    );
    assert!(mask_value(&m, oid::UUID, true, &[0; 16], Some(&Strategy::Redact)).is_err());
    assert_eq!(
        mask_value(&m, oid::DATE, true, &[0; 4], Some(&Strategy::Null)),
        Ok(MaskedValue::Null)
    );
    // Unknown binary type: ASCII PAN rewritten in place, same length.
    let out = replaced(mask_value(
        &m,
        99_999,
        true,
        b"\x01\x024111111111111111",
        None,
    ));
    assert_eq!(out, b"\x01\x02************1111");
    assert!(mask_value(&m, 99_999, true, b"x", Some(&Strategy::Redact)).is_err());
    assert_eq!(
        mask_value(&m, 99_999, true, b"\x00\x01", None),
        Ok(MaskedValue::Unchanged)
    );
}

#[test]
fn unknown_binary_hash_cannot_grow() {
    let cfg = MaskConfig::from_policy_toml(
        "[masking]\ndetectors=[\"email\"]\n[masking.strategies]\nemail=\"hash\"\n",
        "t",
    )
    .expect("cfg");
    let m = Masker::new(&cfg, [0; 32]).expect("masker");
    assert_eq!(
        mask_value(&m, 99_999, true, b"a@b.co", None),
        Err(MaskError::CannotRewrite { type_oid: 99_999 })
    );
}

#[test]
fn copy_text_and_csv() {
    let m = masker();
    let chunk = b"1\t4111111111111111\t123\t\\N\n2\tbob\t456\tx\n";
    let out = mask_copy_data(
        &m,
        chunk,
        &CopyFormat::text(),
        &[None, None, Some(Strategy::Redact)],
    )
    .expect("ok")
    .expect("changed");
    assert_eq!(
        out,
        b"1\t************1111\t***\t\\N\n2\tbob\t***\tx\n".to_vec()
    );
    assert!(mask_copy_data(&m, b"1\t2", &CopyFormat::text(), &[]).is_err());
    assert!(mask_copy_data(&m, b"x\n", &CopyFormat::binary(), &[]).is_err());
    assert_eq!(
        mask_copy_data(&m, b"1\tok\n", &CopyFormat::text(), &[]),
        Ok(None)
    );
    let csv = b"1,\"4111 1111 1111 1111\",\"12\"\"3\",\n";
    let out = mask_copy_data(
        &m,
        csv,
        &CopyFormat::csv(),
        &[None, None, Some(Strategy::Redact), Some(Strategy::Redact)],
    )
    .expect("ok")
    .expect("changed");
    assert_eq!(out, b"1,\"**** **** **** 1111\",\"**\"\"*\",\n".to_vec());
    // bytea hex field in text COPY.
    let hex = encode_bytea_text(b"4111111111111111", ByteaForm::Hex);
    let mut row = b"\\".to_vec();
    row.extend_from_slice(&hex);
    row.push(b'\n');
    let out = mask_copy_data(&m, &row, &CopyFormat::text(), &[])
        .expect("ok")
        .expect("changed");
    let (dec, _) =
        decode_bytea_text(&decode_text_field_for_test(&out[..out.len() - 1])).expect("hex");
    assert_eq!(dec, b"************1111");
}

#[test]
fn copy_options_delimiter_null_escape() {
    let m = masker();
    // DELIMITER '|', NULL 'nil': the CVV is the third field, NULL stays NULL.
    let f = CopyFormat {
        delimiter: b'|',
        null: b"nil".to_vec(),
        ..CopyFormat::text()
    };
    let rules = [None, None, Some(Strategy::Redact)];
    let out = mask_copy_data(&m, b"1|a\tb|123\n2|x|nil\n", &f, &rules)
        .expect("ok")
        .expect("changed");
    assert_eq!(out, b"1|a\tb|***\n2|x|nil\n".to_vec());
    let out = mask_copy_data(&m, b"1|x|123\n", &f, &[None, None, Some(Strategy::Null)])
        .expect("ok")
        .expect("changed");
    assert_eq!(out, b"1|x|nil\n".to_vec());
    // CSV with ESCAPE '\\', QUOTE '\'', DELIMITER ';': quoted fields hold the delimiter, the
    // quote and newlines.
    let f = CopyFormat {
        delimiter: b';',
        quote: b'\'',
        escape: b'\\',
        ..CopyFormat::csv()
    };
    let row = b"1;'a;\\'b\nc';'12\\'3'\n";
    let out = mask_copy_data(&m, row, &f, &[None, None, Some(Strategy::Redact)])
        .expect("ok")
        .expect("changed");
    assert_eq!(out, b"1;'a;\\'b\nc';'**\\'*'\n".to_vec());
    // An escaped quote does not end the field (the row is not cut at the inner newline).
    let row = b"'x\\'\n';7\n";
    assert_eq!(
        mask_copy_data(&m, row, &f, &[None, Some(Strategy::Redact)])
            .expect("ok")
            .expect("changed"),
        b"'x\\'\n';'*'\n".to_vec()
    );
}

fn decode_text_field_for_test(f: &[u8]) -> Vec<u8> {
    // `\\x..` → `\x..`
    f.strip_prefix(b"\\").unwrap_or(f).to_vec()
}
