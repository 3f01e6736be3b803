use proptest::prelude::*;

use super::*;

#[test]
fn raw_member_is_kept_byte_for_byte() {
    let field = br#"sig1=("@method"  "@path";x );created=0001; keyid="a\"b", sig2=();nonce=:AAE=:"#;
    let d = parse_dictionary(field).unwrap();
    let m = d.get("sig1").unwrap();
    assert_eq!(
        m.raw,
        r#"("@method"  "@path";x );created=0001; keyid="a\"b""#
    );
    // A space before a parameter's ';' is not allowed.
    assert!(parse_dictionary(br#"sig1=("@method") ;created=1"#).is_err());
    let Member::InnerList(l) = &m.value else {
        panic!("inner list")
    };
    assert_eq!(l.items.len(), 2);
    assert_eq!(param(&l.params, "created"), Some(&BareItem::Integer(1)));
    assert_eq!(
        param(&l.params, "keyid"),
        Some(&BareItem::String("a\"b".into()))
    );
    assert_eq!(
        param(&l.items[1].params, "x"),
        Some(&BareItem::Boolean(true))
    );
    assert_eq!(d.get("sig2").unwrap().raw, "();nonce=:AAE=:");
}

#[test]
fn bare_items_of_every_kind() {
    let d = parse_dictionary(b"a=1, b=-2.5, c=\"s\", d=tok/en:x, e=:aGk=:, f=?0, g=@1659578233, h")
        .unwrap();
    let v: Vec<_> = d
        .members
        .iter()
        .map(|m| match &m.value {
            Member::Item(i) => i.bare.clone(),
            Member::InnerList(_) => panic!("item"),
        })
        .collect();
    assert_eq!(
        v,
        vec![
            BareItem::Integer(1),
            BareItem::Decimal(-2500),
            BareItem::String("s".into()),
            BareItem::Token("tok/en:x".into()),
            BareItem::ByteSeq(b"hi".to_vec()),
            BareItem::Boolean(false),
            BareItem::Date(1659578233),
            BareItem::Boolean(true),
        ]
    );
}

#[test]
fn refusals() {
    for bad in [
        &b"a=1,"[..],
        b"a=1, a=2",
        b"A=1",
        b"a=(1;p=1;p=2)",
        b"a=\"\x01\"",
        b"a=\"\\n\"",
        b"a=1234567890123456",
        b"a=1.2345",
        b"a=1.",
        b"a=(1 2",
        b"a=(12)x",
        b"a=:!!:",
        b"a=?2",
        b"a=%\"x\"",
        b"a=1 b=2",
        "a=\"é\"".as_bytes(),
    ] {
        assert!(
            parse_dictionary(bad).is_err(),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
    let many: String = (0..=MAX_MEMBERS)
        .map(|i| format!("k{i}=1"))
        .collect::<Vec<_>>()
        .join(",");
    assert!(parse_dictionary(many.as_bytes()).is_err());
    assert_eq!(parse_dictionary(b"").unwrap().members.len(), 0);
    assert_eq!(parse_dictionary(b"  ").unwrap().members.len(), 0);
}

fn arb_key() -> impl Strategy<Value = String> {
    "[a-z*][a-z0-9_.*-]{0,8}"
}

fn arb_bare() -> impl Strategy<Value = BareItem> {
    prop_oneof![
        (-MAX_INTEGER..=MAX_INTEGER).prop_map(BareItem::Integer),
        (-999_999_999_999_999i64..=999_999_999_999_999).prop_map(BareItem::Decimal),
        "[ -~]{0,12}".prop_map(BareItem::String),
        "[A-Za-z*][A-Za-z0-9:/!#$%&'*+.^_`|~-]{0,8}".prop_map(BareItem::Token),
        proptest::collection::vec(any::<u8>(), 0..20).prop_map(BareItem::ByteSeq),
        any::<bool>().prop_map(BareItem::Boolean),
        (-MAX_INTEGER..=MAX_INTEGER).prop_map(BareItem::Date),
    ]
}

fn arb_params() -> impl Strategy<Value = Params> {
    proptest::collection::btree_map(arb_key(), arb_bare(), 0..4)
        .prop_map(|m| m.into_iter().collect())
}

fn arb_item() -> impl Strategy<Value = Item> {
    (arb_bare(), arb_params()).prop_map(|(bare, params)| Item { bare, params })
}

fn arb_member() -> impl Strategy<Value = Member> {
    prop_oneof![
        arb_item().prop_map(Member::Item),
        (proptest::collection::vec(arb_item(), 0..5), arb_params())
            .prop_map(|(items, params)| Member::InnerList(InnerList { items, params })),
    ]
}

proptest! {
    /// Serialize then parse gives back the same dictionary, and each member's raw text is
    /// exactly the serialization of its value.
    #[test]
    fn roundtrip(members in proptest::collection::btree_map(arb_key(), arb_member(), 0..6)) {
        let dict = Dictionary {
            members: members
                .into_iter()
                .map(|(key, value)| DictMember { key, value, raw: String::new() })
                .collect(),
        };
        let text = serialize_dictionary(&dict).unwrap();
        let back = parse_dictionary(text.as_bytes()).unwrap();
        prop_assert_eq!(back.members.len(), dict.members.len());
        for (a, b) in dict.members.iter().zip(&back.members) {
            prop_assert_eq!(&a.key, &b.key);
            prop_assert_eq!(&a.value, &b.value);
            prop_assert!(text.contains(&b.raw));
        }
        prop_assert_eq!(serialize_dictionary(&back).unwrap(), text);
    }

    /// Arbitrary bytes never panic, and whatever parses re-serializes to something that
    /// parses to the same value.
    #[test]
    fn no_panic_and_stable(input in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(d) = parse_dictionary(&input) {
            for m in &d.members {
                prop_assert!(input.windows(m.raw.len().max(1)).any(|w| w == m.raw.as_bytes()) || m.raw.is_empty());
            }
            let text = serialize_dictionary(&d).unwrap();
            let again = parse_dictionary(text.as_bytes()).unwrap();
            prop_assert_eq!(
                again.members.iter().map(|m| &m.value).collect::<Vec<_>>(),
                d.members.iter().map(|m| &m.value).collect::<Vec<_>>()
            );
        }
    }

    /// Structured-looking input: mutations of a valid Signature-Input never panic.
    #[test]
    fn no_panic_near_valid(pos in 0usize..80, byte in any::<u8>()) {
        let mut v = br#"sig1=("@method" "@target-uri" "content-digest");created=1618884473;keyid="k";nonce="n""#.to_vec();
        if let Some(b) = v.get_mut(pos) { *b = byte; }
        let _ = parse_dictionary(&v);
    }
}
