//! Small helpers shared by the library's unit tests.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The permission bits of `p` itself (a symlink is not followed).
pub(crate) fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

/// The names in `dir`, sorted (temp files included: a test that lists a directory wants to see them).
pub(crate) fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Make a named pipe at `path` (nothing ever writes to it: a blocking open would hang).
pub(crate) fn mkfifo(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
}
