//! List cursors (`?cursor=`): `Cursor::decode` and the `limit`/`cursor` query pair.

use keyward_store::Cursor;

pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Some(cursor) = Cursor::decode(&text) {
        // Every cursor decoded is one the API can hand out again, unchanged.
        assert!(cursor.0 >= 0, "{text:?} decoded to a negative position");
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor), "{text:?}");
    }
    // Any position the store hands out encodes to a cursor that decodes back to it.
    let mut bytes = [0u8; 8];
    let n = data.len().min(8);
    bytes[..n].copy_from_slice(&data[..n]);
    let position = i64::from_le_bytes(bytes) & i64::MAX;
    let encoded = Cursor(position).encode();
    assert_eq!(Cursor::decode(&encoded), Some(Cursor(position)), "{encoded}");
    // The query pair answers a field error, never a panic.
    let (limit, cursor) = text.split_once('&').unwrap_or(("20", &text));
    let _ = keyward_server::extract::page(Some(limit), Some(cursor));
}
