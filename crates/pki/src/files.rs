//! Writing files without ever overwriting one.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// Mode for private keys: owner read/write only.
pub const KEY_MODE: u32 = 0o600;
/// Mode for certificates and CSRs.
pub const PUBLIC_MODE: u32 = 0o644;

/// Writes `contents` to `path`, which must not exist yet, with permission `mode`.
///
/// The data is first written and synced to a dot-file in the same directory (which the store
/// ignores), then hard-linked to `path`. The link fails if `path` exists, so nothing is ever
/// overwritten, and a directory watcher never sees a half-written file under the final name.
pub fn write_new(path: &Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        drop(f);
        std::fs::hard_link(&tmp, path)
    })();
    let _ = std::fs::remove_file(&tmp);
    result
}
