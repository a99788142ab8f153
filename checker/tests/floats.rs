//! Every float serde_json writes (the recorder's nemesis values: loss rates,
//! replay rates) reads back: the reader refuses numbers it cannot keep
//! exactly, so parsing must be correctly rounded (serde_json's
//! `float_roundtrip`), or shortest-form floats are refused as inexact.

use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn written_floats_read_back(x in proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL) {
        let line = serde_json::json!({
            "type": "info", "process": "nemesis", "f": "start-loss",
            "value": {"loss": x, "n": 3}, "time": 1
        })
        .to_string();
        let read = checker::format::jsonl::read(format!("{line}\n").as_bytes());
        prop_assert!(read.is_ok(), "{}: {:?}", line, read.err());
    }
}

#[test]
fn a_float_that_parsing_once_rounded_wrongly_reads_back() {
    let line = r#"{"f":"start-replay","process":"nemesis","time":7,"type":"info","value":{"replay":0.11202952958666637}}"#;
    assert!(checker::format::jsonl::read(format!("{line}\n").as_bytes()).is_ok());
}
