//! affinity: which CPUs processes and threads may run on (Linux), for
//! `tracktable-bench --warehouse-cpus`.
//!
//! When tracktable and its PostgreSQL share a machine, they take turns on the same
//! cores, and the benchmark's ratio then measures their CPU added up rather than the
//! warehouse's own limit. Giving the server's processes some CPUs and this process the
//! others stands in for a warehouse on a machine of its own, which is how every
//! Redshift, and most PostgreSQL, deployments run. Whatever is moved is put back when
//! its guard drops.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

/// A set of CPU numbers, written as Linux writes them: `0-3,6`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CpuList(BTreeSet<usize>);

impl CpuList {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_subset(&self, other: &CpuList) -> bool {
        self.0.is_subset(&other.0)
    }

    /// The CPUs of `self` that are not in `other`.
    pub fn without(&self, other: &CpuList) -> CpuList {
        CpuList(self.0.difference(&other.0).copied().collect())
    }

    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().copied()
    }
}

impl FromIterator<usize> for CpuList {
    fn from_iter<I: IntoIterator<Item = usize>>(cpus: I) -> CpuList {
        CpuList(cpus.into_iter().collect())
    }
}

impl fmt::Display for CpuList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut cpus = self.0.iter().copied().peekable();
        let mut first = true;
        while let Some(start) = cpus.next() {
            let mut end = start;
            while cpus.peek() == Some(&(end + 1)) {
                end += 1;
                cpus.next();
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if end == start {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
        }
        Ok(())
    }
}

/// The most CPUs a list may name (glibc's `CPU_SETSIZE`).
pub const MAX_CPUS: usize = 1024;

impl FromStr for CpuList {
    type Err = AffinityError;

    fn from_str(list: &str) -> Result<CpuList, AffinityError> {
        let invalid = |why: String| AffinityError::InvalidList {
            list: list.to_owned(),
            why,
        };
        let number = |text: &str| -> Result<usize, AffinityError> {
            let cpu: usize = text
                .trim()
                .parse()
                .map_err(|_| invalid(format!("{:?} is not a CPU number", text.trim())))?;
            if cpu >= MAX_CPUS {
                return Err(invalid(format!(
                    "CPU {cpu} is past the last, {}",
                    MAX_CPUS - 1
                )));
            }
            Ok(cpu)
        };
        let mut cpus = BTreeSet::new();
        for part in list.split(',') {
            match part.split_once('-') {
                Some((start, end)) => {
                    let (start, end) = (number(start)?, number(end)?);
                    if start > end {
                        return Err(invalid(format!("the range {start}-{end} runs backwards")));
                    }
                    cpus.extend(start..=end);
                }
                None => {
                    cpus.insert(number(part)?);
                }
            }
        }
        Ok(CpuList(cpus))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AffinityError {
    #[error("invalid CPU list {list:?}: {why} (write it like `1`, `2-3` or `0,2`)")]
    InvalidList { list: String, why: String },
    #[error(
        "--warehouse-cpus {wanted}: this process may only use CPUs {allowed}, and the warehouse's CPUs must be among them"
    )]
    NotAllowed { wanted: CpuList, allowed: CpuList },
    #[error(
        "--warehouse-cpus {wanted}: that is every CPU this process may use ({allowed}), which would leave none for tracktable"
    )]
    NothingLeft { wanted: CpuList, allowed: CpuList },
    #[error(
        "PostgreSQL's backend {pid} is not a local `postgres` process here ({why}): --warehouse-cpus needs the server on this machine, outside any container"
    )]
    NotLocal { pid: u32, why: String },
    #[error(
        "cannot move process {pid} to CPUs {cpus}: {source} (run the bench as the server's operating-system user or as root, or leave out --warehouse-cpus)"
    )]
    Move {
        pid: u32,
        cpus: CpuList,
        source: std::io::Error,
    },
    #[error("cannot read the CPUs of process {pid}: {source}")]
    Read { pid: u32, source: std::io::Error },
    #[error("CPU affinity is only supported on Linux")]
    Unsupported,
}

#[cfg(target_os = "linux")]
mod sys {
    use super::{CpuList, MAX_CPUS};

    const SET_SIZE: usize = std::mem::size_of::<libc::cpu_set_t>();

    /// The CPUs thread (or single-threaded process) `tid` may run on.
    pub fn get(tid: u32) -> std::io::Result<CpuList> {
        // SAFETY: `cpu_set_t` is plain bits; all zeros is the empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `set` is a valid, writable `cpu_set_t` of the size passed.
        let status = unsafe { libc::sched_getaffinity(tid as libc::pid_t, SET_SIZE, &mut set) };
        if status != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let limit = MAX_CPUS.min(8 * SET_SIZE);
        // SAFETY: every index is below the set's size in bits.
        Ok((0..limit)
            .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
            .collect())
    }

    /// Lets thread (or single-threaded process) `tid` run on `cpus` only.
    pub fn set(tid: u32, cpus: &CpuList) -> std::io::Result<()> {
        // SAFETY: as in `get`.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        for cpu in cpus.iter().filter(|&cpu| cpu < 8 * SET_SIZE) {
            // SAFETY: `cpu` is below the set's size in bits.
            unsafe { libc::CPU_SET(cpu, &mut set) };
        }
        // SAFETY: `set` is a valid `cpu_set_t` of the size passed.
        let status = unsafe { libc::sched_setaffinity(tid as libc::pid_t, SET_SIZE, &set) };
        if status != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(not(target_os = "linux"))]
mod sys {
    use super::CpuList;

    pub fn get(_tid: u32) -> std::io::Result<CpuList> {
        Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
    }

    pub fn set(_tid: u32, _cpus: &CpuList) -> std::io::Result<()> {
        Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
    }
}

fn supported() -> Result<(), AffinityError> {
    if cfg!(target_os = "linux") {
        Ok(())
    } else {
        Err(AffinityError::Unsupported)
    }
}

/// The CPUs this process's calling thread may use.
pub fn own_cpus() -> Result<CpuList, AffinityError> {
    supported()?;
    sys::get(0).map_err(|source| AffinityError::Read {
        pid: std::process::id(),
        source,
    })
}

/// `/proc/<pid>/stat`'s command name and parent pid.
fn name_and_parent(pid: u32) -> Option<(String, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let name = stat.get(stat.find('(')? + 1..stat.rfind(')')?)?.to_owned();
    // After the name: the state, then the parent's pid.
    let parent = stat
        .get(stat.rfind(')')? + 2..)?
        .split_whitespace()
        .nth(1)?;
    Some((name, parent.parse().ok()?))
}

/// The parent of process `pid`, from `/proc` (`None` when it is gone or not readable).
pub fn parent_of(pid: u32) -> Option<u32> {
    name_and_parent(pid).map(|(_, parent)| parent)
}

/// The pids whose parent is `root`.
fn children_of(root: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| name_and_parent(pid).is_some_and(|(_, parent)| parent == root))
        .collect()
}

/// A process and its children moved to other CPUs; dropping it moves them (and any
/// child started meanwhile, which inherited the new CPUs) back to the root's old ones.
#[derive(Debug)]
pub struct PinnedTree {
    root: u32,
    before: CpuList,
    /// The CPUs the root now has, read back (a cpuset may narrow what was asked for).
    pub cpus: CpuList,
    /// How many processes were moved, the root included.
    pub moved: usize,
}

impl PinnedTree {
    /// Moves `root` and its children to `cpus`. Children start with their parent's CPUs,
    /// so processes the root forks later run there too. On an error, whatever was
    /// already moved is moved back.
    pub fn pin(root: u32, cpus: &CpuList) -> Result<PinnedTree, AffinityError> {
        supported()?;
        let before = sys::get(root).map_err(|source| AffinityError::Read { pid: root, source })?;
        let move_to = |pid: u32| {
            sys::set(pid, cpus).map_err(|source| AffinityError::Move {
                pid,
                cpus: cpus.clone(),
                source,
            })
        };
        // The root first: a child it forks from now on starts on `cpus`.
        move_to(root)?;
        // Whatever happens next, the guard moves the root back.
        let mut tree = PinnedTree {
            root,
            before,
            cpus: CpuList::default(),
            moved: 1,
        };
        tree.cpus = sys::get(root).map_err(|source| AffinityError::Read { pid: root, source })?;
        for child in children_of(root) {
            match move_to(child) {
                Ok(()) => tree.moved += 1,
                // Exited since the listing.
                Err(AffinityError::Move { source, .. })
                    if source.raw_os_error() == Some(libc::ESRCH) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(tree)
    }

    pub fn root(&self) -> u32 {
        self.root
    }

    /// A shell command that puts the tree back by hand, for when this process is killed
    /// before the guard drops.
    pub fn undo_command(&self) -> String {
        format!(
            "for p in {root} $(pgrep -P {root}); do taskset -p -c {cpus} $p; done",
            root = self.root,
            cpus = self.before
        )
    }
}

impl Drop for PinnedTree {
    fn drop(&mut self) {
        for pid in std::iter::once(self.root).chain(children_of(self.root)) {
            if let Err(error) = sys::set(pid, &self.before)
                && error.raw_os_error() != Some(libc::ESRCH)
            {
                tracing::warn!(pid, cpus = %self.before, %error, "could not move a process back to its CPUs");
            }
        }
    }
}

/// Every thread of this process moved to other CPUs; threads started meanwhile inherit
/// them. Dropping it moves every thread back.
#[derive(Debug)]
pub struct PinnedSelf {
    before: CpuList,
}

/// The ids of this process's threads.
fn own_threads() -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect()
}

impl PinnedSelf {
    pub fn pin(cpus: &CpuList) -> Result<PinnedSelf, AffinityError> {
        let before = own_cpus()?;
        let pinned = PinnedSelf { before };
        for tid in own_threads() {
            match sys::set(tid, cpus) {
                Ok(()) => {}
                Err(error) if error.raw_os_error() == Some(libc::ESRCH) => {}
                Err(source) => {
                    return Err(AffinityError::Move {
                        pid: tid,
                        cpus: cpus.clone(),
                        source,
                    });
                }
            }
        }
        Ok(pinned)
    }
}

impl Drop for PinnedSelf {
    fn drop(&mut self) {
        for tid in own_threads() {
            if let Err(error) = sys::set(tid, &self.before)
                && error.raw_os_error() != Some(libc::ESRCH)
            {
                tracing::warn!(tid, cpus = %self.before, %error, "could not move a thread back to its CPUs");
            }
        }
    }
}

/// The server on `warehouse` CPUs and this process on the rest of its own.
#[derive(Debug)]
pub struct Split {
    /// The server's processes; `server.cpus` are the CPUs they now have.
    pub server: PinnedTree,
    /// The CPUs this process now runs on.
    pub tracktable: CpuList,
    // Dropped last: the server moves back first, then this process.
    _own: PinnedSelf,
}

impl Split {
    /// Moves the PostgreSQL server that `backend` (a connection's `pg_backend_pid()`)
    /// belongs to onto `warehouse`, and every thread of this process onto the other CPUs
    /// this process may use.
    pub fn new(backend: u32, warehouse: &CpuList) -> Result<Split, AffinityError> {
        let allowed = own_cpus()?;
        if !warehouse.is_subset(&allowed) || warehouse.is_empty() {
            return Err(AffinityError::NotAllowed {
                wanted: warehouse.clone(),
                allowed,
            });
        }
        let tracktable = allowed.without(warehouse);
        if tracktable.is_empty() {
            return Err(AffinityError::NothingLeft {
                wanted: warehouse.clone(),
                allowed,
            });
        }
        let postmaster = server_root(backend)?;
        let server = PinnedTree::pin(postmaster, warehouse)?;
        let own = PinnedSelf::pin(&tracktable)?;
        Ok(Split {
            server,
            tracktable,
            _own: own,
        })
    }
}

/// The postmaster of the backend `pid`, checking that both are PostgreSQL processes on
/// this machine (a server in a container reports a pid of its own namespace).
fn server_root(backend: u32) -> Result<u32, AffinityError> {
    let not_local = |why: String| AffinityError::NotLocal { pid: backend, why };
    let (name, parent) =
        name_and_parent(backend).ok_or_else(|| not_local(format!("no /proc/{backend}")))?;
    if name != "postgres" {
        return Err(not_local(format!("/proc/{backend} is {name:?}")));
    }
    match name_and_parent(parent) {
        Some((name, _)) if name == "postgres" => Ok(parent),
        Some((name, _)) => Err(not_local(format!("its parent {parent} is {name:?}"))),
        None => Err(not_local(format!("its parent {parent} is gone"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_and_print_as_linux_writes_them() {
        let list: CpuList = "0-2,5,7-8".parse().unwrap();
        assert_eq!(list.iter().collect::<Vec<_>>(), vec![0, 1, 2, 5, 7, 8]);
        assert_eq!(list.to_string(), "0-2,5,7-8");
        assert_eq!("3".parse::<CpuList>().unwrap().to_string(), "3");
        assert_eq!(" 1 , 0 ".parse::<CpuList>().unwrap().to_string(), "0-1");
        let without = list.without(&"1-5".parse().unwrap());
        assert_eq!(without.to_string(), "0,7-8");
    }

    #[test]
    fn bad_lists_say_what_is_wrong() {
        for (list, why) in [
            ("", "\"\" is not a CPU number"),
            ("a", "\"a\" is not a CPU number"),
            ("3-1", "runs backwards"),
            ("1,", "\"\" is not a CPU number"),
            ("4096", "past the last"),
        ] {
            let error = list.parse::<CpuList>().unwrap_err().to_string();
            assert!(error.contains(why), "{list:?}: {error}");
        }
    }

    /// A process that forks a child, both sleeping; killed when dropped.
    struct Tree(std::process::Child);

    impl Drop for Tree {
        fn drop(&mut self) {
            let root = self.0.id();
            for child in children_of(root) {
                // SAFETY: a plain signal to a process this test started.
                unsafe { libc::kill(child as libc::pid_t, libc::SIGKILL) };
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn allowed_of(pid: u32) -> String {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
            .unwrap()
            .trim()
            .to_owned()
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_process_tree_moves_to_other_cpus_and_back() {
        let tree = Tree(
            std::process::Command::new("sh")
                .args(["-c", "sleep 30 & exec sleep 30"])
                .spawn()
                .unwrap(),
        );
        let root = tree.0.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while children_of(root).is_empty() {
            assert!(std::time::Instant::now() < deadline, "sh never forked");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let allowed = own_cpus().unwrap();
        let before = allowed_of(root);
        let last: CpuList = allowed.iter().last().into_iter().collect();
        let pinned = PinnedTree::pin(root, &last).unwrap();
        assert_eq!(pinned.moved, 2, "the shell and its child");
        assert_eq!(pinned.cpus, last, "read back");
        assert_eq!(allowed_of(root), last.to_string());
        for child in children_of(root) {
            assert_eq!(allowed_of(child), last.to_string());
        }
        assert_eq!(
            pinned.undo_command(),
            format!("for p in {root} $(pgrep -P {root}); do taskset -p -c {before} $p; done")
        );
        drop(pinned);
        assert_eq!(allowed_of(root), before);
        for child in children_of(root) {
            assert_eq!(allowed_of(child), before);
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_warehouse_cannot_take_every_cpu_or_one_this_process_lacks() {
        let allowed = own_cpus().unwrap();
        let error = Split::new(std::process::id(), &allowed).unwrap_err();
        assert!(
            matches!(error, AffinityError::NothingLeft { .. }),
            "{error}"
        );
        let absent: CpuList = [MAX_CPUS - 1].into_iter().collect();
        let error = Split::new(std::process::id(), &absent).unwrap_err();
        assert!(matches!(error, AffinityError::NotAllowed { .. }), "{error}");
        assert!(error.to_string().contains(&allowed.to_string()), "{error}");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_process_that_is_not_postgres_is_refused() {
        let allowed = own_cpus().unwrap();
        let Some(first) = allowed.iter().next().filter(|_| allowed.len() > 1) else {
            // One CPU: the split is refused before the server is looked at.
            let error = Split::new(std::process::id(), &allowed).unwrap_err();
            assert!(matches!(error, AffinityError::NothingLeft { .. }));
            return;
        };
        let one: CpuList = [first].into_iter().collect();
        let error = Split::new(std::process::id(), &one).unwrap_err();
        assert!(matches!(error, AffinityError::NotLocal { .. }), "{error}");
        assert_eq!(own_cpus().unwrap(), allowed, "nothing moved");
    }
}
