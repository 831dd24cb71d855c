//! What the generated-code freshness tests share.

use std::path::Path;

/// Compares every file protoc generated into `fresh` with the committed copy
/// in `committed`, byte for byte. With `CLT_PROTO_REGEN` set it rewrites the
/// stale ones instead of failing; `test` names the test to rerun.
pub fn check_fresh(fresh: &Path, committed: &Path, min_files: usize, test: &str) {
    let mut names: Vec<_> = std::fs::read_dir(fresh)
        .expect("read generated")
        .map(|e| e.expect("dir entry").file_name())
        .collect();
    names.sort();
    assert!(
        names.len() >= min_files,
        "protoc generated too little: {names:?}"
    );

    let regen = std::env::var_os("CLT_PROTO_REGEN").is_some();
    if regen {
        std::fs::create_dir_all(committed).expect("create the generated code's folder");
    }
    let mut stale = Vec::new();
    for name in &names {
        let new = std::fs::read(fresh.join(name)).expect("read fresh");
        let path = committed.join(name);
        let old = std::fs::read(&path).unwrap_or_default();
        if new != old {
            if regen {
                std::fs::write(&path, &new).expect("write generated");
            } else {
                stale.push(name.to_string_lossy().into_owned());
            }
        }
    }
    assert!(
        stale.is_empty(),
        "generated code is stale: {stale:?}; run CLT_PROTO_REGEN=1 cargo test -p clt-proto --test {test}"
    );
}
