//! `shmkafkad spool list`: one line per spooled record, as text or JSON.

use std::io::{self, Write};
use std::path::Path;

use serde_json::json;

use super::files;
use super::format::SpoolRecord;
use super::reader::{self, Entry};
use super::time::format_ms;

/// Bytes of a key shown in the text listing.
const KEY_PREVIEW: usize = 32;

/// What a listing found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Listed {
    /// Records printed.
    pub records: usize,
    /// Files read.
    pub files: usize,
    /// Files that could not be read, or had damage (reported on `warn`).
    pub problems: usize,
}

/// Prints every record in `dir` to `out`; damage and unreadable files are
/// reported to `warn`.
pub fn list(
    dir: &Path,
    json: bool,
    out: &mut dyn Write,
    warn: &mut dyn Write,
) -> io::Result<Listed> {
    let mut listed = Listed::default();
    for path in files::list(dir)? {
        let scan = match reader::read_file(&path) {
            Ok(scan) => scan,
            Err(e) => {
                writeln!(warn, "warning: {e}")?;
                listed.problems += 1;
                continue;
            }
        };
        listed.files += 1;
        for damage in &scan.damage {
            writeln!(warn, "warning: {}: {damage}", path.display())?;
        }
        listed.problems += usize::from(!scan.damage.is_empty());
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        for entry in &scan.records {
            if json {
                writeln!(out, "{}", json_line(&name, entry))?;
            } else {
                writeln!(out, "{}", text_line(&name, entry))?;
            }
            listed.records += 1;
        }
    }
    Ok(listed)
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Inverse of [`hex`].
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() & 1 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn preview(bytes: Option<&[u8]>) -> String {
    let Some(bytes) = bytes else {
        return "null".into();
    };
    let shown: String = bytes[..bytes.len().min(KEY_PREVIEW)]
        .iter()
        .flat_map(|&b| std::ascii::escape_default(b))
        .map(char::from)
        .collect();
    let more = if bytes.len() > KEY_PREVIEW { "..." } else { "" };
    format!("\"{}{more}\"", shown.replace('"', "\\\""))
}

fn text_line(file: &str, entry: &Entry) -> String {
    let r = &entry.record;
    format!(
        "{file} offset={} time={} topic={} partition={} key={} value_size={} error={}{}",
        entry.offset,
        format_ms(r.failed_at_ms),
        if r.topic.is_empty() { "?" } else { &r.topic },
        r.partition,
        preview(r.key.as_deref()),
        r.value
            .as_ref()
            .map_or_else(|| "null".into(), |v| v.len().to_string()),
        r.error_name,
        if r.content_lost() {
            " content=lost"
        } else {
            ""
        },
    )
}

fn headers_json(r: &SpoolRecord) -> serde_json::Value {
    match r.decoded_headers() {
        Some(headers) => headers
            .iter()
            .map(|(name, value)| {
                json!({
                    "name": String::from_utf8_lossy(name),
                    "name_hex": hex(name),
                    "value_hex": value.as_deref().map(hex),
                })
            })
            .collect(),
        None => serde_json::Value::Null,
    }
}

fn json_line(file: &str, entry: &Entry) -> serde_json::Value {
    let r = &entry.record;
    json!({
        "file": file,
        "offset": entry.offset,
        "failed_at": format_ms(r.failed_at_ms),
        "failed_at_ms": r.failed_at_ms,
        "topic": r.topic,
        "topic_id": r.topic_id,
        "partition": r.partition,
        "timestamp_ms": r.timestamp_ms,
        "seq": r.seq,
        "client_name": r.client_name,
        "client_pid": r.client_pid,
        "error_code": r.error_code,
        "error_name": r.error_name,
        "persistence": r.persistence.name(),
        "content_lost": r.content_lost(),
        "key_hex": r.key.as_deref().map(hex),
        "value_hex": r.value.as_deref().map(hex),
        "value_size": r.value.as_ref().map(Vec::len),
        "headers": headers_json(r),
        "headers_raw_hex": hex(&r.headers),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::format::tests::sample;
    use crate::spool::writer::SpoolWriter;

    #[test]
    fn lists_text_and_json() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = SpoolWriter::new(dir.path(), 1 << 20, "t");
        writer.append(&sample().as_ref());
        writer.commit().unwrap();
        let (mut out, mut warn) = (Vec::new(), Vec::new());
        let listed = list(dir.path(), false, &mut out, &mut warn).unwrap();
        assert_eq!(listed.records, 1);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(
                "topic=orders partition=-1 key=\"k1\" value_size=null error=MSG_SIZE_TOO_LARGE"
            ),
            "{text}"
        );
        let mut out = Vec::new();
        list(dir.path(), true, &mut out, &mut warn).unwrap();
        let line: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(line["key_hex"], "6b31");
        assert_eq!(line["value_hex"], serde_json::Value::Null);
        assert_eq!(line["headers"][1]["value_hex"], serde_json::Value::Null);
        assert_eq!(
            unhex(line["headers"][0]["value_hex"].as_str().unwrap()),
            Some(b"v".to_vec())
        );
        assert!(warn.is_empty());
    }
}
