//! A checksum-verified cache of derived files: a `.gz` decompressed, a `.tar.gz` extracted.
//!
//! On-demand loading needs random access, which a gzip stream does not give. The data layer
//! creates the uncompressed or extracted form once, in a cache folder, and records checksums
//! beside it. Every later use re-verifies the recorded checksums and re-creates the form if
//! anything changed, so nothing in the cache is ever trusted because it merely exists, and
//! nothing is made by hand.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::{DataError, Result};

/// The folder that holds derived files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cache {
    root: PathBuf,
}

/// The environment variable that overrides the default cache location.
pub const CACHE_ENV: &str = "NN_CHECKLIST_CACHE";

impl Default for Cache {
    /// `$NN_CHECKLIST_CACHE`, else `$XDG_CACHE_HOME/nn-checklist`, else `$HOME/.cache/nn-checklist`,
    /// else a folder under the system's temporary directory.
    fn default() -> Self {
        let root = std::env::var_os(CACHE_ENV)
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("nn-checklist"))
            })
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/nn-checklist"))
            })
            .unwrap_or_else(|| std::env::temp_dir().join("nn-checklist-cache"));
        Cache { root }
    }
}

impl Cache {
    /// A cache in `root` (created on first use).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Cache { root: root.into() }
    }

    /// The cache folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn ensure_root(&self) -> Result<()> {
        fs::create_dir_all(&self.root).map_err(|e| DataError::io(&self.root, e))
    }

    /// The decompressed content of the gzip file `src`, as a verified file in the cache.
    pub fn gunzip(&self, src: &Path) -> Result<PathBuf> {
        let src_sha = sha256_file(src)?;
        let stem = file_stem_without(src, ".gz");
        let out = self.root.join(format!("{stem}-{}", &src_sha[..16]));
        let sidecar = sidecar_path(&out);
        if let (Ok(recorded), true) = (fs::read_to_string(&sidecar), out.is_file())
            && sha256_file(&out)? == recorded.trim()
        {
            return Ok(out);
        }
        self.ensure_root()?;
        let mut tmp = tempfile::NamedTempFile::new_in(&self.root)
            .map_err(|e| DataError::io(&self.root, e))?;
        let file = File::open(src).map_err(|e| DataError::io(src, e))?;
        let mut decoder = flate2::read::MultiGzDecoder::new(BufReader::new(file));
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 16];
        let mut written = 0u64;
        {
            let mut w = BufWriter::new(tmp.as_file_mut());
            loop {
                let n = match decoder.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        return Err(DataError::Decompress {
                            path: src.to_path_buf(),
                            offset: written,
                            reason: e.to_string(),
                        });
                    }
                };
                hasher.update(&buf[..n]);
                w.write_all(&buf[..n]).map_err(|e| DataError::io(&out, e))?;
                written += n as u64;
            }
            w.flush().map_err(|e| DataError::io(&out, e))?;
        }
        let sha = hex::encode(hasher.finalize());
        tmp.persist(&out)
            .map_err(|e| DataError::io(&out, e.error))?;
        write_atomic_in(&sidecar, format!("{sha}\n").as_bytes())?;
        Ok(out)
    }

    /// The files of the `.tar.gz` archive `src`, extracted into a verified folder in the cache.
    ///
    /// The folder holds `MANIFEST.sha256` (one `sha256  relative/path` line per file); a folder
    /// whose files no longer match it is extracted again.
    pub fn extract_tar_gz(&self, src: &Path) -> Result<PathBuf> {
        let src_sha = sha256_file(src)?;
        let stem = file_stem_without(src, ".tar.gz");
        let out = self.root.join(format!("{stem}-{}", &src_sha[..16]));
        if out.is_dir() {
            if verify_manifest(&out)? {
                return Ok(out);
            }
            fs::remove_dir_all(&out).map_err(|e| DataError::io(&out, e))?;
        }
        self.ensure_root()?;
        let tmp = tempfile::Builder::new()
            .prefix(".extract-")
            .tempdir_in(&self.root)
            .map_err(|e| DataError::io(&self.root, e))?;
        let file = File::open(src).map_err(|e| DataError::io(src, e))?;
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(BufReader::new(file)));
        archive
            .unpack(tmp.path())
            .map_err(|e| DataError::Decompress {
                path: src.to_path_buf(),
                offset: 0,
                reason: format!("cannot extract the archive: {e}"),
            })?;
        let mut lines = Vec::new();
        for rel in walk_files(tmp.path())? {
            let sha = sha256_file(&tmp.path().join(&rel))?;
            lines.push(format!("{sha}  {}", rel.display()));
        }
        lines.sort();
        let mut manifest = lines.join("\n");
        manifest.push('\n');
        fs::write(tmp.path().join(MANIFEST), manifest).map_err(|e| DataError::io(tmp.path(), e))?;
        let tmp_path = tmp.keep();
        match fs::rename(&tmp_path, &out) {
            Ok(()) => Ok(out),
            Err(_) if out.is_dir() => {
                // Another process extracted it first; use theirs once it verifies.
                let _ = fs::remove_dir_all(&tmp_path);
                if verify_manifest(&out)? {
                    Ok(out)
                } else {
                    Err(DataError::Checksum {
                        path: out.join(MANIFEST),
                        expected: "every file to match the manifest".into(),
                        found: "a mismatch right after extraction".into(),
                    })
                }
            }
            Err(e) => Err(DataError::io(&out, e)),
        }
    }
}

const MANIFEST: &str = "MANIFEST.sha256";

fn sidecar_path(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".sha256");
    PathBuf::from(s)
}

fn file_stem_without(src: &Path, suffix: &str) -> String {
    let name = src
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.strip_suffix(suffix).unwrap_or(&name).to_string()
}

fn verify_manifest(dir: &Path) -> Result<bool> {
    let Ok(text) = fs::read_to_string(dir.join(MANIFEST)) else {
        return Ok(false);
    };
    let mut listed = 0usize;
    for line in text.lines().filter(|l| !l.is_empty()) {
        let Some((sha, rel)) = line.split_once("  ") else {
            return Ok(false);
        };
        let path = dir.join(rel);
        if !path.is_file() || sha256_file(&path)? != sha {
            return Ok(false);
        }
        listed += 1;
    }
    Ok(walk_files(dir)?.len() == listed + 1)
}

/// Every regular file under `dir`, as paths relative to it, sorted.
fn walk_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let abs = dir.join(&rel);
        for entry in fs::read_dir(&abs).map_err(|e| DataError::io(&abs, e))? {
            let entry = entry.map_err(|e| DataError::io(&abs, e))?;
            let kind = entry
                .file_type()
                .map_err(|e| DataError::io(&entry.path(), e))?;
            let child = rel.join(entry.file_name());
            if kind.is_dir() {
                stack.push(child);
            } else if kind.is_file() {
                out.push(child);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The sha256 of a file, as lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(|e| DataError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(DataError::io(path, e)),
        };
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

fn write_atomic_in(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::report::write_atomic(path, bytes).map_err(|e| DataError::io(path, e))
}
