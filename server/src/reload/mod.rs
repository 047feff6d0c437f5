//! File reload: a `Watch` over a set of files (named files, or the files of one directory with
//! one extension) that tells its owner when their contents changed. The one mechanism behind the
//! plugin directory (`filter::wasm`), the JWKS file (`auth`) and the TLS certificate pair
//! (`tls`). It does not parse files or decide what a change means: the owner does, and keeps
//! what it loaded before when new contents are unusable.
//!
//! Contents decide, not timestamps: each file's SHA-256 is compared with the one last read.
//! - Files are opened by path at every look, so a file replaced by rename (editors, deploy
//!   tools, symlinked secret mounts) is followed; nothing holds on to an inode.
//! - A named file that cannot be read (briefly missing mid-replace) is no change: what was read
//!   before stays in force, the problem is logged once, and the file is read again when it is
//!   back (no change either, if its contents are the same).
//! - A file whose stat moves while it is read was caught being written: it is not taken, and the
//!   next look reads it again. With `settle`, a change is taken only once two looks `SETTLE`
//!   apart see the same stats, so a file written in several steps (`cp`, an editor's save) or
//!   removed and written again is taken once, whole.
//! - The stat (size, times, inode) only saves reading files that did not change, and it is
//!   trusted only when the file's times were older than `RACY` when it was read (git's "racily
//!   clean" rule): a second write within the file system's timestamp granularity is still read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

/// Quiet time a change must keep (two looks this far apart see the same stats) before a
/// settling `Watch` takes it: a file written in several steps is taken once, whole.
pub(crate) const SETTLE: Duration = Duration::from_millis(200);

/// A file's stat is trusted to stand for its contents only when its times were at least this
/// much older than the moment it was read: longer than the coarsest timestamp granularity of
/// common file systems (2 s on FAT), so a write right after a read always changes the stat.
const RACY: Duration = Duration::from_secs(2);

/// One file of the set as read by a look.
pub(crate) struct File {
    pub(crate) path: PathBuf,
    pub(crate) bytes: Vec<u8>,
    pub(crate) sha256: [u8; 32],
}

impl File {
    /// The SHA-256 of the contents, lower-case hex.
    pub(crate) fn sha256_hex(&self) -> String {
        hex(&self.sha256)
    }
}

/// The set as read: every file that could be read, in path order, and (for a directory) the
/// listed files that could not be read, whose contents read before stay in force.
pub(crate) struct Read {
    pub(crate) files: Vec<File>,
    pub(crate) unreadable: Vec<PathBuf>,
}

/// What a look found.
pub(crate) enum Look {
    /// The contents are what was last read (or a file could not be read: no change).
    Same,
    /// Something moved and has not been quiet for `SETTLE` yet, or a file was caught being
    /// written: look again soon.
    Settling,
    /// The contents changed (or, for a directory, a file came or went): the whole set as it is.
    Changed(Read),
}

/// A file of the set that could not be read when the whole set had to be.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {}: {source}", path.display())]
pub(crate) struct ReadError {
    pub(crate) path: PathBuf,
    #[source]
    pub(crate) source: std::io::Error,
}

enum Set {
    Files(Vec<PathBuf>),
    Dir {
        dir: PathBuf,
        extension: &'static str,
    },
}

/// What the stat of a file says, for "did it move since": size, modification and change times,
/// and (unix) the inode, which a rename-replace changes.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stat {
    len: u64,
    modified: Option<SystemTime>,
    #[cfg(unix)]
    changed: (i64, i64),
    #[cfg(unix)]
    inode: (u64, u64),
}

impl Stat {
    fn of(path: &Path) -> std::io::Result<Stat> {
        let meta = std::fs::metadata(path)?;
        Ok(Stat {
            len: meta.len(),
            modified: meta.modified().ok(),
            #[cfg(unix)]
            changed: {
                use std::os::unix::fs::MetadataExt;
                (meta.ctime(), meta.ctime_nsec())
            },
            #[cfg(unix)]
            inode: {
                use std::os::unix::fs::MetadataExt;
                (meta.dev(), meta.ino())
            },
        })
    }

    /// Whether every time of the stat is older than `RACY` before `read_at`.
    fn settled_before(&self, read_at: SystemTime) -> bool {
        let Some(limit) = read_at.checked_sub(RACY) else {
            return false;
        };
        #[cfg(unix)]
        let changed = u64::try_from(self.changed.0)
            .ok()
            .zip(u32::try_from(self.changed.1).ok())
            .map(|(s, ns)| SystemTime::UNIX_EPOCH + Duration::new(s, ns));
        #[cfg(not(unix))]
        let changed = self.modified;
        [self.modified, changed]
            .into_iter()
            .all(|t| t.is_some_and(|t| t < limit))
    }
}

/// The last read of one file.
struct Seen {
    stat: Stat,
    sha256: [u8; 32],
    /// `stat` may stand for the contents (see `RACY`): a look with the same stat skips reading.
    trusted: bool,
}

/// A set of files and what was last read of them.
pub(crate) struct Watch {
    /// What the files are, for log lines ("TLS certificate", "plugin directory").
    what: &'static str,
    set: Set,
    settle: bool,
    seen: BTreeMap<PathBuf, Seen>,
    /// The stats that made the last look return `Settling`.
    pending: Option<BTreeMap<PathBuf, Stat>>,
    /// The read problem last logged per path, so that it is logged once, not at every look.
    problems: BTreeMap<PathBuf, String>,
}

impl Watch {
    /// The named files, taken together: a change is reported only when every one of them
    /// can be read.
    pub(crate) fn files(what: &'static str, paths: impl IntoIterator<Item = PathBuf>) -> Watch {
        Watch::new(what, Set::Files(paths.into_iter().collect()))
    }

    /// The regular files of `dir` whose name ends in `.extension`, each on its own: a listed
    /// file that cannot be read keeps what was read of it before.
    pub(crate) fn dir(what: &'static str, dir: &Path, extension: &'static str) -> Watch {
        Watch::new(
            what,
            Set::Dir {
                dir: dir.to_owned(),
                extension,
            },
        )
    }

    fn new(what: &'static str, set: Set) -> Watch {
        Watch {
            what,
            set,
            settle: false,
            seen: BTreeMap::new(),
            pending: None,
            problems: BTreeMap::new(),
        }
    }

    /// Takes a change only once it has been quiet for `SETTLE` (for owners that look on a
    /// timer; an owner that looks on demand gets every change at first sight).
    pub(crate) fn settled(mut self) -> Watch {
        self.settle = true;
        self
    }

    /// Reads the whole set now, whatever the stats say, and remembers it as seen: the owner's
    /// first load, or an explicit reload. Fails when a named file, or the directory, cannot be
    /// read.
    pub(crate) fn read(&mut self) -> Result<Read, ReadError> {
        let paths = self
            .list()
            .map_err(|(path, source)| ReadError { path, source })?;
        self.listed();
        let mut seen = BTreeMap::new();
        let mut read = Read {
            files: Vec::new(),
            unreadable: Vec::new(),
        };
        for path in paths {
            match read_file(&path) {
                Ok((file, mut new, moved)) => {
                    // Caught being written: taken, and read again at the next look.
                    new.trusted &= !moved;
                    self.problems.remove(&path);
                    seen.insert(path, new);
                    read.files.push(file);
                }
                Err(source) => match self.set {
                    Set::Files(_) => return Err(ReadError { path, source }),
                    Set::Dir { .. } if self.vanished(&source) => {}
                    Set::Dir { .. } => {
                        self.problem(&path, &source);
                        self.keep(&path, &mut seen);
                        read.unreadable.push(path);
                    }
                },
            }
        }
        self.seen = seen;
        self.pending = None;
        Ok(read)
    }

    /// Compares the set with what was last read (see the module's doc).
    pub(crate) fn look(&mut self) -> Look {
        let paths = match self.list() {
            Ok(paths) => paths,
            Err((path, error)) => {
                self.problem(&path, &error);
                return Look::Same;
            }
        };
        self.listed();
        let mut stats = BTreeMap::new();
        let (mut moved, mut racy) = (false, false);
        for path in &paths {
            match Stat::of(path) {
                Ok(stat) => {
                    match self.seen.get(path) {
                        Some(seen) if seen.stat == stat => racy |= !seen.trusted,
                        _ => moved = true,
                    }
                    stats.insert(path.clone(), stat);
                }
                // No change: a named file briefly missing keeps what was read of it.
                Err(error) if self.vanished(&error) => moved = true,
                Err(error) => self.problem(path, &error),
            }
        }
        let listed = |p: &PathBuf| paths.contains(p);
        moved |= matches!(self.set, Set::Dir { .. }) && !self.seen.keys().all(listed);
        if !moved && !racy {
            self.pending = None;
            return Look::Same;
        }
        if moved && self.settle && self.pending.as_ref() != Some(&stats) {
            self.pending = Some(stats);
            return Look::Settling;
        }
        self.pending = None;
        self.read_changed(paths)
    }

    fn read_changed(&mut self, paths: Vec<PathBuf>) -> Look {
        let mut seen = BTreeMap::new();
        let mut read = Read {
            files: Vec::new(),
            unreadable: Vec::new(),
        };
        let mut changed = false;
        for path in paths {
            match read_file(&path) {
                Ok((_, _, true)) => return Look::Settling,
                Ok((file, new, false)) => {
                    changed |= self.seen.get(&path).map(|s| s.sha256) != Some(new.sha256);
                    self.problems.remove(&path);
                    seen.insert(path, new);
                    read.files.push(file);
                }
                Err(error) if self.vanished(&error) => {}
                Err(error) => {
                    self.problem(&path, &error);
                    if matches!(self.set, Set::Files(_)) {
                        return Look::Same;
                    }
                    self.keep(&path, &mut seen);
                    read.unreadable.push(path);
                }
            }
        }
        // A directory's file that went away (or came back unreadable) is a change too.
        changed |= self.seen.keys().any(|p| !seen.contains_key(p));
        self.seen = seen;
        if changed {
            Look::Changed(read)
        } else {
            Look::Same
        }
    }

    /// The paths of the set now: the named files, or the directory's matching files (sorted).
    fn list(&self) -> Result<Vec<PathBuf>, (PathBuf, std::io::Error)> {
        match &self.set {
            Set::Files(paths) => Ok(paths.clone()),
            Set::Dir { dir, extension } => {
                let entries = std::fs::read_dir(dir).map_err(|e| (dir.clone(), e))?;
                let mut out = Vec::new();
                for entry in entries {
                    let path = entry.map_err(|e| (dir.clone(), e))?.path();
                    if path.extension().and_then(|e| e.to_str()) == Some(*extension)
                        && path.is_file()
                    {
                        out.push(path);
                    }
                }
                out.sort();
                Ok(out)
            }
        }
    }

    /// A directory's file removed between the listing and its read: gone, not a problem.
    fn vanished(&self, error: &std::io::Error) -> bool {
        matches!(self.set, Set::Dir { .. }) && error.kind() == std::io::ErrorKind::NotFound
    }

    /// The directory could be listed: its problem, if one was logged, is over.
    fn listed(&mut self) {
        if let Set::Dir { dir, .. } = &self.set {
            self.problems.remove(dir);
        }
    }

    /// A listed file that cannot be read keeps its last read, untrusted so it is read again.
    fn keep(&mut self, path: &Path, seen: &mut BTreeMap<PathBuf, Seen>) {
        if let Some(mut last) = self.seen.remove(path) {
            last.trusted = false;
            seen.insert(path.to_owned(), last);
        }
    }

    fn problem(&mut self, path: &Path, error: &std::io::Error) {
        let message = error.to_string();
        if self.problems.get(path) != Some(&message) {
            tracing::warn!(
                path = %path.display(),
                %error,
                "{}: cannot read it; what was read of it before stays in force",
                self.what
            );
            self.problems.insert(path.to_owned(), message);
        }
    }
}

/// Reads one file: its contents, what to remember of it, and whether its stat moved while it
/// was read (a writer was at work).
fn read_file(path: &Path) -> std::io::Result<(File, Seen, bool)> {
    let read_at = SystemTime::now();
    let before = Stat::of(path)?;
    let bytes = std::fs::read(path)?;
    let after = Stat::of(path)?;
    let sha256: [u8; 32] = Sha256::digest(&bytes).into();
    let seen = Seen {
        trusted: before.settled_before(read_at),
        stat: before.clone(),
        sha256,
    };
    let file = File {
        path: path.to_owned(),
        bytes,
        sha256,
    };
    Ok((file, seen, after != before))
}

/// Looks at `watch` every `interval` until `cancel`, and every `SETTLE` while a change settles.
/// Each look, and `apply` with a change, runs on a blocking thread (file reads and the owner's
/// parsing or compiling stay off the async workers) under `watch`'s lock, which serialises them
/// with the owner's own reads.
pub(crate) async fn run(
    watch: Arc<Mutex<Watch>>,
    interval: Duration,
    cancel: CancellationToken,
    apply: impl Fn(Read) + Send + Sync + 'static,
) {
    let apply = Arc::new(apply);
    let mut wait = interval;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
        let (watch, apply) = (watch.clone(), apply.clone());
        let look = tokio::task::spawn_blocking(move || {
            let mut watch = watch.lock();
            match watch.look() {
                Look::Same => false,
                Look::Settling => true,
                Look::Changed(read) => {
                    apply(read);
                    false
                }
            }
        });
        wait = match look.await {
            Ok(true) => SETTLE,
            Ok(false) => interval,
            Err(error) => {
                tracing::warn!(%error, "file reload task failed");
                interval
            }
        };
    }
}

/// Lower-case hex of a digest.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests;
