//! Gateway JSON pointers (RFC 6901): the first line is the pointer, the rest a JSON document.

use keyward_server::gateway::routes::JsonPointer;
use serde_json::Value;

/// How many nodes of a document are tried as pointer targets: bounds the time per input.
const MAX_NODES: usize = 64;

pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (pointer, document) = text.split_once('\n').unwrap_or((&text, ""));
    let document: Option<Value> = serde_json::from_str(document).ok();
    if let Ok(parsed) = JsonPointer::parse(pointer) {
        assert_eq!(parsed.as_str(), pointer);
        assert_eq!(parsed.to_string(), pointer);
        if let Some(document) = &document {
            let _ = parsed.find(document);
            if pointer.is_empty() {
                assert_eq!(parsed.find(document), Some(document));
            }
        }
    }
    // Every node of the document is reached by the pointer built from its escaped path.
    if let Some(document) = &document {
        let mut budget = MAX_NODES;
        walk(document, document, &mut String::new(), &mut budget);
    }
}

fn walk(root: &Value, node: &Value, path: &mut String, budget: &mut usize) {
    if *budget == 0 {
        return;
    }
    *budget -= 1;
    let pointer = JsonPointer::parse(path).unwrap_or_else(|e| panic!("{path:?} was refused: {e}"));
    assert_eq!(pointer.find(root), Some(node), "{path:?}");
    let len = path.len();
    match node {
        Value::Object(map) => {
            for (key, child) in map {
                path.push('/');
                path.push_str(&key.replace('~', "~0").replace('/', "~1"));
                walk(root, child, path, budget);
                path.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                path.push('/');
                path.push_str(&i.to_string());
                walk(root, child, path, budget);
                path.truncate(len);
            }
        }
        _ => {}
    }
}
