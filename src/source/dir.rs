//! The `dir` source: a local directory of objects.
//!
//! One lister task per process walks the directory every poll interval and sends each
//! new file to the local worker that owns it (by name hash; files owned by workers of
//! other processes are left to those processes' listers, which walk the same
//! directory). A file is admitted once it has not been modified for one poll interval,
//! so a file still being written is not read half-way.
//!
//! Loaded files are remembered in append-only "done logs" under the state directory,
//! one per worker (`done-w<N>.log`, one name per line), written only after the file's
//! batch committed. At start-up every worker's log is read, so nothing is loaded twice
//! across restarts, whatever the worker count was before.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::ObjectRef;
use super::start::Delivery;

/// Name of the default state directory inside the source directory; the lister skips it.
pub const STATE_DIR_NAME: &str = ".tracktable";

#[derive(Debug, thiserror::Error)]
pub enum DirError {
    #[error("cannot read source directory {path}: {source}")]
    List { path: PathBuf, source: io::Error },
    #[error("cannot use state directory {path}: {source}")]
    State { path: PathBuf, source: io::Error },
}

/// The files under `root` (recursively, skipping names starting with `.`), sorted by
/// name, that are not in `skip` and were last modified at least `settle` ago.
pub fn list(
    root: &Path,
    skip: &HashSet<Arc<str>>,
    settle: Duration,
) -> Result<Vec<ObjectRef>, DirError> {
    let now = SystemTime::now();
    let mut found = Vec::new();
    let mut pending_dirs = vec![root.to_owned()];
    while let Some(dir) = pending_dirs.pop() {
        let entries = fs::read_dir(&dir).map_err(|source| DirError::List {
            path: dir.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| DirError::List {
                path: dir.clone(),
                source,
            })?;
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            // A file that vanishes between read_dir and metadata is simply not listed.
            let Ok(metadata) = entry.metadata() else {
                continue;
            };
            let path = entry.path();
            if metadata.is_dir() {
                pending_dirs.push(path);
                continue;
            }
            if !metadata.is_file() {
                continue;
            }
            let modified = metadata.modified().ok();
            let settled = modified
                .and_then(|modified| now.duration_since(modified).ok())
                .is_none_or(|age| age >= settle);
            if !settled {
                continue;
            }
            let Some(name) = relative_name(root, &path) else {
                continue;
            };
            if skip.contains(name.as_str()) {
                continue;
            }
            found.push(ObjectRef::file(
                Arc::from(name),
                path,
                metadata.len(),
                modified,
            ));
        }
    }
    found.sort();
    Ok(found)
}

fn relative_name(root: &Path, path: &Path) -> Option<String> {
    let relative = path.strip_prefix(root).ok()?;
    let parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    Some(parts.join("/"))
}

/// Every name in every done log under `state_dir`. Lines without a final newline (a
/// write cut short by a crash) are ignored: that file's batch was not acknowledged.
pub fn read_done(state_dir: &Path) -> Result<HashSet<Arc<str>>, DirError> {
    let state_error = |source| DirError::State {
        path: state_dir.to_owned(),
        source,
    };
    let mut done = HashSet::new();
    let entries = match fs::read_dir(state_dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(done),
        Err(error) => return Err(state_error(error)),
    };
    for entry in entries {
        let entry = entry.map_err(state_error)?;
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if !(file_name.starts_with("done-") && file_name.ends_with(".log")) {
            continue;
        }
        let mut reader = BufReader::new(File::open(entry.path()).map_err(state_error)?);
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).map_err(state_error)? == 0 {
                break;
            }
            if let Some(name) = line.strip_suffix('\n') {
                done.insert(Arc::from(name));
            }
        }
    }
    Ok(done)
}

/// One worker's done log.
#[derive(Debug)]
pub struct DoneLog {
    file: File,
    path: PathBuf,
}

impl DoneLog {
    pub fn open(state_dir: &Path, worker_index: usize) -> Result<DoneLog, DirError> {
        fs::create_dir_all(state_dir).map_err(|source| DirError::State {
            path: state_dir.to_owned(),
            source,
        })?;
        let path = state_dir.join(format!("done-w{worker_index}.log"));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| DirError::State {
                path: path.clone(),
                source,
            })?;
        Ok(DoneLog { file, path })
    }

    /// Records objects as done, durably (one write and one fsync per call).
    pub fn append<'a>(&mut self, names: impl IntoIterator<Item = &'a str>) -> Result<(), DirError> {
        let mut text = String::new();
        for name in names {
            text.push_str(name);
            text.push('\n');
        }
        if text.is_empty() {
            return Ok(());
        }
        let state_error = |source| DirError::State {
            path: self.path.clone(),
            source,
        };
        self.file.write_all(text.as_bytes()).map_err(state_error)?;
        self.file.sync_data().map_err(|source| DirError::State {
            path: self.path.clone(),
            source,
        })
    }
}

/// The `dir` source's lister task.
pub struct Lister {
    pub root: PathBuf,
    /// Objects loaded before (from the done logs), and every one listed since.
    pub done: HashSet<Arc<str>>,
    pub poll_interval: Duration,
    pub delivery: Delivery,
}

/// Lists the directory every poll interval and sends each new object this process owns
/// to its worker. In `once` mode it lists once and then closes the channels, which ends
/// the dataflow after everything listed is loaded.
pub async fn list_forever(mut lister: Lister) {
    let settle = if lister.delivery.once {
        Duration::ZERO
    } else {
        lister.poll_interval
    };
    loop {
        match list(&lister.root, &lister.done, settle) {
            Ok(objects) => {
                for object in objects {
                    let owner = super::owner(&object.name, lister.delivery.peers);
                    // Remember it as seen whether it is ours or another process's.
                    lister.done.insert(Arc::clone(&object.name));
                    let Some(local) = owner
                        .checked_sub(lister.delivery.first_worker)
                        .filter(|&local| local < lister.delivery.senders.len())
                    else {
                        continue;
                    };
                    if lister.delivery.senders[local].send(object).await.is_err() {
                        return;
                    }
                    lister.delivery.shutdown.wake_all();
                }
            }
            Err(error) => tracing::error!(error = %error, "cannot list the source directory"),
        }
        if lister.delivery.once || lister.delivery.shutdown.is_requested() {
            // Dropping the senders closes every worker's input; then wake them to see it.
            drop(std::mem::take(&mut lister.delivery.senders));
            lister.delivery.shutdown.wake_all();
            return;
        }
        tokio::time::sleep(lister.poll_interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::Body;

    #[test]
    fn lists_new_settled_files_recursively_and_skips_state() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("2024/01")).unwrap();
        fs::write(root.path().join("2024/01/b.json"), "{}").unwrap();
        fs::write(root.path().join("a.json"), "{}\n").unwrap();
        fs::write(root.path().join(".hidden"), "x").unwrap();
        fs::create_dir_all(root.path().join(STATE_DIR_NAME)).unwrap();
        fs::write(root.path().join(STATE_DIR_NAME).join("done-w0.log"), "x\n").unwrap();
        let listed = list(root.path(), &HashSet::new(), Duration::ZERO).unwrap();
        let names: Vec<&str> = listed.iter().map(|o| o.name.as_ref()).collect();
        assert_eq!(names, ["2024/01/b.json", "a.json"]);
        assert_eq!(listed[1].bytes, 3);
        assert_eq!(
            listed[0].body,
            Body::File(Arc::from(root.path().join("2024/01/b.json")))
        );

        let skip: HashSet<Arc<str>> = [Arc::from("a.json")].into_iter().collect();
        assert_eq!(list(root.path(), &skip, Duration::ZERO).unwrap().len(), 1);
        // Files modified just now are not settled yet.
        assert!(
            list(root.path(), &HashSet::new(), Duration::from_secs(3600))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn done_logs_survive_reopening_and_ignore_torn_lines() {
        let state = tempfile::tempdir().unwrap();
        let mut log = DoneLog::open(state.path(), 0).unwrap();
        log.append(["a.json", "b/c.json"]).unwrap();
        drop(log);
        let mut other = DoneLog::open(state.path(), 3).unwrap();
        other.append(["d.json"]).unwrap();
        fs::OpenOptions::new()
            .append(true)
            .open(state.path().join("done-w3.log"))
            .unwrap()
            .write_all(b"torn")
            .unwrap();
        let done = read_done(state.path()).unwrap();
        let mut names: Vec<&str> = done.iter().map(|n| n.as_ref()).collect();
        names.sort();
        assert_eq!(names, ["a.json", "b/c.json", "d.json"]);
        assert!(read_done(&state.path().join("missing")).unwrap().is_empty());
    }
}
