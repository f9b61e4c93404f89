//! CSV exports (RFC 4180: a header row, CRLF line ends, a field quoted when
//! it holds a comma, a quote or a line break, quotes doubled), streamed a
//! page at a time so a registry of any size is exported in bounded memory.
//! A field a spreadsheet would run as a formula is written with a leading
//! `'` (see `defused`): these files are opened by people, and some fields
//! (a consent's proof, a source) are text a service or a sender chose.

use crate::store::StoreError;
use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use std::borrow::Cow;
use std::future::Future;

/// `f` as a spreadsheet shows it, not runs it: one that starts with `=`,
/// `@`, a tab or a carriage return, or with `+` or `-` and is not a plain
/// number (an E.164 number stays as it is), gets a leading `'`, the
/// spreadsheet's mark for text (OWASP's advice on CSV injection).
fn defused(f: &str) -> Cow<'_, str> {
    let formula = match f.as_bytes() {
        [b'=' | b'@' | b'\t' | b'\r', ..] => true,
        [b'+' | b'-', rest @ ..] => rest.is_empty() || !rest.iter().all(|b| b.is_ascii_digit() || *b == b'.'),
        _ => false,
    };
    if formula { Cow::Owned(format!("'{f}")) } else { Cow::Borrowed(f) }
}

/// One record: each field defused, then quoted where RFC 4180 needs it;
/// then CRLF.
pub fn record<S: AsRef<str>>(fields: &[S]) -> String {
    let mut line = String::new();
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        let f = defused(f.as_ref());
        let f = f.as_ref();
        if f.contains([',', '"', '\r', '\n']) {
            line.push('"');
            line.push_str(&f.replace('"', "\"\""));
            line.push('"');
        } else {
            line.push_str(f);
        }
    }
    line.push_str("\r\n");
    line
}

/// A `text/csv` answer named `filename`: the `header` row, then the records
/// of every page `page` gives, asked with the state the previous page left
/// (`None` once there is no more). A store error mid-way cuts the body
/// short, so a client never takes a partial export for a whole one.
pub fn response<S, F, Fut>(filename: &str, header: &[&str], first: S, page: F) -> Response
where
    S: Send + 'static,
    F: Fn(S) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(Vec<Vec<String>>, Option<S>), StoreError>> + Send + 'static,
{
    let head = futures::stream::once(std::future::ready(Ok::<_, StoreError>(record(header))));
    let rows = futures::stream::unfold(Some(first), move |state| {
        let next = state.map(&page);
        async move {
            match next?.await {
                Ok((records, more)) => {
                    let text: String = records.iter().map(|r| record(r)).collect();
                    Some((Ok(text), more))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "CSV export cut short");
                    Some((Err(e), None))
                }
            }
        }
    });
    let body = Body::from_stream(head.chain(rows));
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{filename}\"")),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::record;

    #[test]
    fn quotes_only_what_rfc_4180_needs() {
        assert_eq!(record(&["a", "b c", ""]), "a,b c,\r\n");
        assert_eq!(record(&["x,y", "say \"yes\"", "two\nlines"]), "\"x,y\",\"say \"\"yes\"\"\",\"two\nlines\"\r\n");
    }

    #[test]
    fn a_formula_is_written_as_text_and_a_number_as_it_is() {
        for formula in ["=1+1", "@SUM(A1)", "+cmd|' /C calc'!A0", "-2+3", "\tx", "\rx", "+", "-"] {
            assert_eq!(
                record(&[formula]).trim_end_matches("\r\n").trim_matches('"'),
                format!("'{formula}"),
                "{formula:?}"
            );
        }
        assert_eq!(
            record(&["=HYPERLINK(\"http://x\",\"a, b\")"]),
            "\"'=HYPERLINK(\"\"http://x\"\",\"\"a, b\"\")\"\r\n"
        );
        for plain in ["+79161234567", "-5", "-0.5", "2026-12-07T00:00:00Z", "web form #12", "a=b"] {
            assert_eq!(record(&[plain]), format!("{plain}\r\n"), "{plain:?}");
        }
    }
}
