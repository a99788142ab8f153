//! Jepsen text logs (`INFO  jepsen.util - 2 :invoke :cas [3 0]`, tab-separated), as in the etcd
//! histories of Porcupine's test data.
//!
//! Two rules follow how those histories were produced and checked:
//! - `:fail :cas` is Jepsen's etcd client reporting a value mismatch, so it is a cas
//!   that *completed* with result `false` (the register did not hold the expected
//!   value at its linearization point), not a dropped op.
//! - `:fail :read :timed-out` is an indeterminate read.

use std::io::BufRead;

use super::edn::{Edn, Parser};
use super::quote;
use crate::error::ReadError;
use crate::history::{EventKind, EventRecord, History, HistoryBuilder, Process};
use crate::value::Value;

const PREFIX: &str = "jepsen.util -";

/// Reads a Jepsen text log.
pub fn read<R: BufRead>(input: R) -> Result<History, ReadError> {
    let mut builder = HistoryBuilder::new();
    for line in super::numbered_lines(input) {
        let (n, line) = line?;
        if line.trim().is_empty() {
            continue;
        }
        let Some(at) = line.find(PREFIX) else {
            return Err(ReadError::at(
                n,
                None,
                format!("expected `... {PREFIX} PROCESS TYPE F VALUE`"),
            ));
        };
        let mut fields = line[at + PREFIX.len()..].split_whitespace();
        let process = fields.next().unwrap_or("");
        let process = if process == ":nemesis" {
            Process::Nemesis
        } else {
            Process::Client(process.parse::<i64>().map_err(|_| {
                ReadError::at(
                    n,
                    Some("process"),
                    format!("`{}` is not a process id", quote(process)),
                )
            })?)
        };
        let kind_text = fields.next().unwrap_or("");
        let kind = kind_text
            .strip_prefix(':')
            .and_then(EventKind::parse)
            .ok_or_else(|| {
                ReadError::at(
                    n,
                    Some("type"),
                    format!("`{}` is not :invoke, :ok, :fail or :info", quote(kind_text)),
                )
            })?;
        let f_text = fields.next().unwrap_or("");
        let f = f_text
            .strip_prefix(':')
            .filter(|f| !f.is_empty())
            .ok_or_else(|| {
                ReadError::at(
                    n,
                    Some("f"),
                    format!("`{}` is not a keyword like :read", quote(f_text)),
                )
            })?;
        let rest: Vec<&str> = fields.collect();
        let rest = rest.join(" ");
        let mut parser = Parser::new(&rest);
        let value = if parser.at_end() {
            Edn::Nil
        } else {
            let v = parser
                .value()
                .map_err(|e| ReadError::at(n, Some("value"), e.message))?;
            if !parser.at_end() {
                return Err(ReadError::at(
                    n,
                    Some("value"),
                    format!("text after the value in `{}`", quote(&rest)),
                ));
            }
            v
        };
        let timed_out = matches!(&value, Edn::Keyword(k) if k == "timed-out");
        let (kind, value) = match (kind, f) {
            (EventKind::Fail, "cas") => (EventKind::Ok, Value::Bool(false)),
            (EventKind::Fail, "read") if timed_out => (EventKind::Info, Value::Null),
            (EventKind::Info, _) => (EventKind::Info, Value::Null),
            (kind, _) => (kind, value.to_value()),
        };
        builder.push(EventRecord {
            kind,
            process,
            f,
            key: None,
            value,
            time: None,
            node: None,
            error: timed_out.then_some("timed-out"),
            line: n,
        })?;
    }
    Ok(builder.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Outcome;

    #[test]
    fn reads_tabs_and_spaces_and_special_failures() {
        let text = "INFO  jepsen.util - 2\t:invoke\t:cas\t[3 0]\nINFO  jepsen.util - 1   :invoke   :read   nil\nINFO  jepsen.util - 2\t:fail\t:cas\t[3 0]\nINFO  jepsen.util - 1   :fail   :read   :timed-out\n";
        let h = read(text.as_bytes()).unwrap();
        assert_eq!(h.ops.len(), 2);
        assert_eq!(
            h.ops[0].input,
            Value::List(vec![Value::Int(3), Value::Int(0)].into())
        );
        assert_eq!(h.ops[0].output, Outcome::Ok(Value::Bool(false)));
        assert!(h.ops[1].is_indeterminate());
    }

    #[test]
    fn names_the_bad_field() {
        let e = read("INFO  jepsen.util - x\t:invoke\t:read\tnil\n".as_bytes()).unwrap_err();
        assert_eq!((e.line, e.field), (1, Some("process")));
        let e = read("INFO  jepsen.util - 1\t:invoke\tread\tnil\n".as_bytes()).unwrap_err();
        assert_eq!(e.field, Some("f"));
        let e = read("garbage\n".as_bytes()).unwrap_err();
        assert_eq!(e.line, 1);
    }
}
