//! Atomic file writes: write a temporary file in the target directory, flush it to disk, then
//! rename it over the target. A reader never sees a half-written file, and an interrupted
//! write leaves the old file (if any) intact.

use crate::{format_err, io_err, Result};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The longest file name (bytes) of Linux and macOS file systems.
pub const NAME_MAX: usize = 255;

/// A short temporary name beside `path`, keeping its extension (plotters picks the format
/// from it): `.gud-PID-N.EXT`. Short, so that a legal 255-byte output name still has a
/// legal temporary (regression, issue 20: `.NAME.tmp-PID` was longer than the name).
fn temp_path(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().into_owned())
        .filter(|e| e.len() <= 16)
        .map_or(String::new(), |e| format!(".{e}"));
    path.with_file_name(format!(".gud-{}-{n}{ext}", std::process::id()))
}

/// The outputs of one command: each is written to a temporary beside its final name, and all
/// are renamed into place by [`Outputs::commit`] once the command has succeeded. Dropped
/// without a commit (an error, a signal), the temporaries are removed and nothing that existed
/// before is touched. An output that is one of the command's inputs (the same file, by path,
/// symlink or hard link) or that repeats another output is refused before anything is computed.
#[derive(Debug, Default)]
pub struct Outputs {
    inputs: Vec<PathBuf>,
    staged: Vec<(PathBuf, PathBuf)>,
    committed: bool,
}

/// Same file: equal canonical paths, or (Unix) the same device and inode.
fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(x), Ok(y)) if x == y => return true,
        _ => {}
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(x), Ok(y)) = (fs::metadata(a), fs::metadata(b)) {
            return x.dev() == y.dev() && x.ino() == y.ino();
        }
    }
    false
}

/// `path` with its parent directory canonicalised (the file itself need not exist yet).
fn normalised(path: &Path) -> PathBuf {
    let parent = fs::canonicalize(parent_dir(path)).unwrap_or_else(|_| parent_dir(path).into());
    match path.file_name() {
        Some(name) => parent.join(name),
        None => parent,
    }
}

impl Outputs {
    /// Outputs that must differ from every file in `inputs` (a missing input is ignored).
    pub fn new<P: AsRef<Path>>(inputs: impl IntoIterator<Item = P>) -> Self {
        Outputs {
            inputs: inputs
                .into_iter()
                .map(|p| p.as_ref().to_path_buf())
                .collect(),
            staged: Vec::new(),
            committed: false,
        }
    }

    /// Registers the output `path` (its directory must exist or be creatable and writable) and
    /// returns the temporary to write it to.
    pub fn stage(&mut self, path: &Path) -> Result<PathBuf> {
        if path.file_name().is_none() {
            return Err(format_err(
                path,
                "an output must be a file name, not a directory",
            ));
        }
        if path.is_dir() {
            return Err(format_err(
                path,
                "is a directory; expected an output file name",
            ));
        }
        // every name is checked here, before any output is renamed into place (regression,
        // issue 34: a legal .npy name was renamed, then its longer .config.toml failed)
        let name_len = path.file_name().map_or(0, |n| n.len());
        if name_len > NAME_MAX {
            return Err(format_err(
                path,
                format!(
                    "the file name is {name_len} bytes; file systems allow at most {NAME_MAX}: \
                     choose a shorter output name"
                ),
            ));
        }
        if let Ok(meta) = fs::symlink_metadata(path) {
            if meta.file_type().is_symlink() {
                let target = fs::read_link(path)
                    .map_or("an unreadable target".into(), |t| t.display().to_string());
                return Err(format_err(
                    path,
                    format!(
                        "is a symbolic link (to {target}): gud renames its outputs into place \
                         and would replace the link, not write its target; give the target's \
                         path, or remove the link"
                    ),
                ));
            }
        }
        for input in &self.inputs {
            if same_file(path, input) || normalised(path) == normalised(input) {
                return Err(format_err(
                    path,
                    format!(
                        "is also an input of this command ({}); choose another output name \
                         (an output never overwrites an input)",
                        input.display()
                    ),
                ));
            }
        }
        if self
            .staged
            .iter()
            .any(|(_, p)| normalised(p) == normalised(path))
        {
            return Err(format_err(
                path,
                "is named twice as an output of this command",
            ));
        }
        ensure_writable_dir(parent_dir(path))?;
        let tmp = temp_path(path);
        self.staged.push((tmp.clone(), path.to_path_buf()));
        Ok(tmp)
    }

    /// Renames every staged output into place (each rename is atomic); fails naming the first
    /// output whose temporary was not written.
    pub fn commit(mut self) -> Result<()> {
        for (tmp, path) in &self.staged {
            if !tmp.exists() {
                return Err(format_err(path, "was never written (internal error)"));
            }
        }
        for (tmp, path) in &self.staged {
            fs::rename(tmp, path).map_err(io_err(path))?;
        }
        self.committed = true;
        Ok(())
    }
}

impl Drop for Outputs {
    fn drop(&mut self) {
        if !self.committed {
            for (tmp, _) in &self.staged {
                let _ = fs::remove_file(tmp);
            }
        }
    }
}

/// Writes `bytes` to `path` atomically (temp file + fsync + rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_path(path);
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err(path))
}

/// Creates `dir` (and parents) if needed and checks that files can be created in it.
pub fn ensure_writable_dir(dir: &Path) -> Result<()> {
    // regression, issue 34: a file here said only "File exists"
    if dir.exists() && !dir.is_dir() {
        return Err(format_err(
            dir,
            "is a file, not a directory: expected a directory to write into",
        ));
    }
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let probe = dir.join(format!(".gud-write-probe-{}", std::process::id()));
    fs::File::create(&probe).map_err(|e| {
        format_err(
            dir,
            format!("is not a directory that files can be created in ({e})"),
        )
    })?;
    let _ = fs::remove_file(&probe);
    Ok(())
}

/// An advisory lock on a directory (`DIR/.gud.lock`), held until dropped: a second gud
/// process that wants the same run directory gets an error instead of racing the first.
#[derive(Debug)]
pub struct DirLock {
    _file: fs::File,
}

/// Takes the lock of `dir` (created if needed), or fails at once when another process holds it.
pub fn lock_dir(dir: &Path) -> Result<DirLock> {
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    let path = dir.join(".gud.lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err(&path))?;
    match file.try_lock() {
        Ok(()) => Ok(DirLock { _file: file }),
        Err(fs::TryLockError::WouldBlock) => Err(crate::IoError::Format {
            path: dir.to_path_buf(),
            reason: "is in use by another gud process (its lock .gud.lock is held): wait for \
                     it to finish or choose another directory"
                .into(),
        }),
        Err(fs::TryLockError::Error(e)) => Err(io_err(&path)(e)),
    }
}

/// The parent directory of an output file ("." for a bare name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp files left"
        );
    }

    #[test]
    fn outputs_appear_together_at_commit_and_not_at_all_without_it() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.npy"), dir.path().join("a.config.toml"));
        fs::write(&a, b"old").unwrap();
        let mut out = Outputs::new::<&Path>([]);
        let ta = out.stage(&a).unwrap();
        let tb = out.stage(&b).unwrap();
        assert_eq!(ta.extension().unwrap(), "npy");
        write_atomic(&ta, b"new").unwrap();
        write_atomic(&tb, b"cfg").unwrap();
        drop(out); // the command failed: nothing changes, no temporaries stay
        assert_eq!(fs::read(&a).unwrap(), b"old");
        assert!(!b.exists());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        let mut out = Outputs::new::<&Path>([]);
        write_atomic(&out.stage(&a).unwrap(), b"new").unwrap();
        write_atomic(&out.stage(&b).unwrap(), b"cfg").unwrap();
        out.commit().unwrap();
        assert_eq!(fs::read(&a).unwrap(), b"new");
        assert_eq!(fs::read(&b).unwrap(), b"cfg");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn an_output_equal_to_an_input_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("data.npy");
        fs::write(&input, b"data").unwrap();
        let other = dir.path().join("sub/../data.npy");
        fs::create_dir(dir.path().join("sub")).unwrap();
        let mut out = Outputs::new([&input]);
        let e = out.stage(&other).unwrap_err().to_string();
        assert!(e.contains("also an input"), "{e}");
        let link = dir.path().join("link.npy");
        fs::hard_link(&input, &link).unwrap();
        assert!(out.stage(&link).is_err(), "a hard link is the same file");
        let fine = dir.path().join("out.npy");
        out.stage(&fine).unwrap();
        let e = out.stage(&fine).unwrap_err().to_string();
        assert!(e.contains("named twice"), "{e}");
        assert_eq!(fs::read(&input).unwrap(), b"data");
    }

    #[test]
    fn a_255_byte_output_name_has_a_legal_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(format!("{}.npy", "x".repeat(251)));
        write_atomic(&p, b"ok").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"ok");
    }

    #[test]
    fn a_locked_directory_refuses_a_second_lock_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let first = lock_dir(dir.path()).unwrap();
        let e = lock_dir(dir.path()).unwrap_err().to_string();
        assert!(e.contains("in use by another gud process"), "{e}");
        drop(first);
        lock_dir(dir.path()).unwrap();
    }

    #[test]
    fn missing_directory_is_an_error_naming_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("no/such/dir/a.txt");
        let e = write_atomic(&p, b"x").unwrap_err().to_string();
        assert!(e.contains("a.txt"), "{e}");
    }
}
