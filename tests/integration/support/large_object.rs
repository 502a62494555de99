//! Objects larger than a batch, and the peak memory of the process that loads them:
//! shared by the large-object scenarios and `benches/memory.rs`.

use std::io::Write;
use std::path::Path;
use std::process::{Child, ExitStatus};
use std::time::Duration;

use flate2::Compression;
use flate2::write::GzEncoder;
use tracktable_gen::{GenConfig, Generator};

/// What [`gzip_object`] wrote.
#[derive(Debug, Clone, Copy)]
pub struct Written {
    /// Messages, all valid, each with its own message id.
    pub messages: u64,
    pub inflated: u64,
    pub compressed: u64,
}

/// Writes one gzip object of generated events (none malformed, no type drift) that
/// inflates to at least `inflated` bytes. Each generated event is written `copies` times
/// in a row, each copy under its own message id (`<id>-<copy>`): copies sit within
/// gzip's window, so the object compresses like repetitive production traffic, and
/// generation costs a `copies`th.
pub fn gzip_object(path: &Path, inflated: u64, copies: u64, seed: u64) -> std::io::Result<Written> {
    let config = GenConfig {
        events: u64::MAX,
        seed,
        drift_rate: 0.0,
        bad_rate: 0.0,
    };
    let mut generator = Generator::new(&config);
    let file = std::fs::File::create(path)?;
    let mut out =
        std::io::BufWriter::with_capacity(1 << 16, GzEncoder::new(file, Compression::fast()));
    let mut line = Vec::with_capacity(4096);
    let mut written = Written {
        messages: 0,
        inflated: 0,
        compressed: 0,
    };
    let key = b"\"messageId\":\"";
    while written.inflated < inflated {
        if generator.next_into(&mut line).is_none() {
            break;
        }
        let Some(start) = line.windows(key.len()).position(|window| window == key) else {
            continue;
        };
        let id_start = start + key.len();
        let Some(id_length) = line[id_start..].iter().position(|&byte| byte == b'"') else {
            continue;
        };
        let (head, tail) = line.split_at(id_start + id_length);
        for copy in 0..copies {
            let suffix = format!("-{copy}");
            out.write_all(head)?;
            out.write_all(suffix.as_bytes())?;
            out.write_all(tail)?;
            out.write_all(b"\n")?;
            written.messages += 1;
            written.inflated += (head.len() + suffix.len() + tail.len() + 1) as u64;
        }
    }
    let encoder = out.into_inner().map_err(|error| error.into_error())?;
    encoder.finish()?.sync_all()?;
    written.compressed = std::fs::metadata(path)?.len();
    Ok(written)
}

/// Writes one object holding a JSON array of `elements` small track calls (one element
/// a line, all of the event `Item Viewed`, message ids `m0`, `m1`, ...); returns its
/// size.
pub fn json_array(path: &Path, elements: u64) -> std::io::Result<u64> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    out.write_all(b"[\n")?;
    for i in 0..elements {
        let separator = if i + 1 < elements { "," } else { "" };
        writeln!(
            out,
            r#"{{"type":"track","event":"Item Viewed","messageId":"m{i}","userId":"u{}","properties":{{"n":{i}}}}}{separator}"#,
            i % 97
        )?;
    }
    out.write_all(b"]\n")?;
    out.into_inner()
        .map_err(|error| error.into_error())?
        .sync_all()?;
    Ok(std::fs::metadata(path)?.len())
}

/// Waits for `child` for at most `limit` and returns its exit status and peak resident
/// size in bytes (`wait4`'s `ru_maxrss`: the kernel's high-water mark of the process, to
/// its last moment). Kills it and panics on a timeout.
pub fn wait_with_peak_rss(mut child: Child, limit: Duration, what: &str) -> (ExitStatus, u64) {
    use std::os::unix::process::ExitStatusExt;
    let pid = child.id() as libc::pid_t;
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut status: libc::c_int = 0;
        // SAFETY: an all-zero `rusage` is a valid value of the plain C struct.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `pid` is this process's child, not yet waited for; `status` and `usage`
        // are valid for writes for the duration of the call.
        let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        let error = std::io::Error::last_os_error();
        let _ = sender.send((waited, status, usage.ru_maxrss, error));
    });
    match receiver.recv_timeout(limit) {
        Ok((waited, status, max_rss_kib, _)) if waited == pid => (
            ExitStatus::from_raw(status),
            u64::try_from(max_rss_kib).unwrap_or(0) * 1024,
        ),
        Ok((_, _, _, error)) => panic!("{what}: cannot wait for tracktable: {error}"),
        Err(_) => {
            let _ = child.kill();
            panic!("{what}: tracktable did not finish within {limit:?}; killed it");
        }
    }
}
