//! Small helpers shared by the library's unit tests.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::config::Settings;

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

/// A configuration loaded from `d`: one certificate `web` (a.example.test), the account `ca` whose CA is
/// 127.0.0.1:9 (nothing listens: connections are refused at once), the DNS server `p` with a TSIG key,
/// `state_dir` `d/state`.
pub(crate) fn one_cert_settings(d: &Path) -> Settings {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir(d.join("certs.d")).unwrap();
    let key = d.join("tsig.key");
    fs::write(
        &key,
        "key \"k\" { algorithm hmac-sha256; secret \"2FbcAyQwbUV2HpUSSImK7XwVr8FEBXB5v8mzaYcBd5A=\"; };\n",
    )
    .unwrap();
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(
        d.join("renewd.yaml"),
        format!(
            "state_dir: {}/state\naccounts: {{ ca: {{ directory: \"https://127.0.0.1:9/dir\" }} }}\n\
             dns_servers: {{ p: {{ address: 127.0.0.1, tsig_key_file: {} }} }}\nresolver: [127.0.0.1]\n",
            d.display(),
            key.display()
        ),
    )
    .unwrap();
    fs::write(d.join("certs.d/web.yaml"), "domains: [a.example.test]\n").unwrap();
    crate::config::load(&d.join("renewd.yaml"))
        .unwrap()
        .settings
}
