//! `cargo xtask image`: the patroni-rs container image, built without a Docker engine or a
//! registry, as an OCI archive that containerd (`ctr images import`) and Podman load.
//!
//! Two layers:
//! 1. **base**: Debian bookworm (`mmdebstrap --variant=minbase`) with PostgreSQL 15 and the
//!    backup tools `patroni-backup` drives (pgBackRest, Barman Cloud; docs/backups.md), the
//!    `postgres` user at uid/gid 999, and nothing a server does not need: no recommends, apt
//!    lists, docs, man pages, locales, and no LLVM (PostgreSQL runs without JIT). Built once per
//!    recipe and cached in `$PATRONI_RS_CACHE/image/` (a changed recipe builds a new one);
//! 2. **binaries**: `patroni`, `patronictl`, `patroni-k8s-callback` and `patroni-backup`
//!    (release build) in `/usr/local/bin`, and the default configuration.
//!
//! The image runs as `postgres` (999:999); its entrypoint is `patroni /etc/patroni`: the
//! directory's files merged in name order (the image's defaults `00-defaults.yml`, from
//! `deploy/image/patroni.yml`, then any file mounted there), overridden by `PATRONI_*`
//! variables, so a pod needs no file; a mounted file given as the argument replaces them all. `Containerfile` at the
//! repository root builds the same image with Docker or Podman.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, bail, ensure};
use clap::Args;
use patroni_testlab::{DEBIAN_SOURCES, OciImage, build_archive, cache_dir};

/// The image's name in containerd after import.
pub const IMAGE_NAME: &str = "localhost/patroni-rs";
/// Bumped whenever the base recipe changes in a way the text below does not show.
const BASE_RECIPE_VERSION: u32 = 2;
/// Packages on top of minbase: the server and the two backup tools (#18).
const PACKAGES: &str = "postgresql-15,pgbackrest,barman-cli-cloud";
/// Fixed ids of the `postgres` user, as the official PostgreSQL images use.
const PG_UID: u32 = 999;
/// `PATH` inside the image.
const IMAGE_PATH: &str =
    "/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `image`.
#[derive(Debug, Args)]
pub struct ImageArgs {
    /// Where the OCI archive goes.
    #[arg(long, default_value = "target/image/patroni-rs.oci.tar")]
    pub output: PathBuf,
    /// The image tag.
    #[arg(long, default_value = env!("CARGO_PKG_VERSION"))]
    pub tag: String,
}

/// Builds the image; prints where it is and its sizes.
///
/// # Errors
/// A tool is missing or fails.
pub fn run(args: ImageArgs) -> anyhow::Result<ExitCode> {
    let built = build(&args.output, &args.tag)?;
    println!(
        "{}: {IMAGE_NAME}:{} ({} MiB compressed, {} MiB unpacked)",
        built.archive.display(),
        args.tag,
        built.compressed / (1 << 20),
        built.unpacked / (1 << 20)
    );
    println!(
        "import: ctr -n k8s.io images import --base-name {IMAGE_NAME} {}",
        built.archive.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// What was built.
#[derive(Debug, Clone)]
pub struct Built {
    /// The OCI archive.
    pub archive: PathBuf,
    /// Bytes of the compressed layers.
    pub compressed: u64,
    /// Bytes of the unpacked layers.
    pub unpacked: u64,
}

/// Builds the image into `output` (an OCI archive whose image is tagged `tag`).
///
/// # Errors
/// A tool is missing or fails.
pub fn build(output: &Path, tag: &str) -> anyhow::Result<Built> {
    for tool in ["mmdebstrap", "umoci", "tar"] {
        ensure!(
            which(tool),
            "{tool} is not installed (apt-get install mmdebstrap umoci)"
        );
    }
    let root = workspace_root();
    let cache = cache_dir().join("image");
    std::fs::create_dir_all(&cache).with_context(|| format!("create {}", cache.display()))?;
    let base = base_layer(&cache)?;
    let binaries = build_binaries(&root)?;
    let work = tempdir_in(&cache, "build")?;
    let bin_tar = work.join("binaries.tar");
    binaries_layer(&binaries, &work.join("binaries"), &bin_tar)?;

    let config: Vec<String> = [
        "--author",
        "patroni-rs",
        "--config.user",
        &format!("{PG_UID}:{PG_UID}"),
        "--config.env",
        &format!("PATH={IMAGE_PATH}"),
        "--config.env",
        "LANG=C.UTF-8",
        "--config.workingdir",
        "/var/lib/postgresql",
        "--config.entrypoint",
        "/usr/local/bin/patroni",
        "--config.cmd",
        "/etc/patroni",
        "--config.exposedports",
        "5432/tcp",
        "--config.exposedports",
        "8008/tcp",
        "--config.label",
        "org.opencontainers.image.title=patroni-rs",
        "--config.label",
        &format!("org.opencontainers.image.version={tag}"),
    ]
    .map(String::from)
    .into();
    let compressed = build_archive(
        &OciImage {
            layers: &[&base, &bin_tar],
            tag,
            config: &config,
        },
        &work,
        output,
    )?;
    let unpacked = file_size(&base)? + file_size(&bin_tar)?;
    std::fs::remove_dir_all(&work).ok();
    Ok(Built {
        archive: output.to_path_buf(),
        compressed,
        unpacked,
    })
}

/// The base layer (a rootfs tar), from the cache or built now.
fn base_layer(cache: &Path) -> anyhow::Result<PathBuf> {
    let recipe = base_recipe();
    let tar = cache.join(format!("base-v{BASE_RECIPE_VERSION}.tar"));
    let recipe_file = tar.with_extension("recipe");
    if tar.exists()
        && std::fs::read_to_string(&recipe_file).ok().as_deref() == Some(&recipe.join("\n"))
    {
        return Ok(tar);
    }
    tracing::info!("building the base layer with mmdebstrap (about two minutes)");
    let partial = tar.with_extension("partial.tar");
    let _ = std::fs::remove_file(&partial);
    let mut cmd = Command::new("mmdebstrap");
    cmd.args(&recipe)
        .arg("bookworm")
        .arg(&partial)
        .args(DEBIAN_SOURCES);
    run_tool(&mut cmd)?;
    std::fs::rename(&partial, &tar)?;
    std::fs::write(&recipe_file, recipe.join("\n"))?;
    Ok(tar)
}

/// mmdebstrap's options for the base: what the Containerfile's `RUN` does, step by step.
fn base_recipe() -> Vec<String> {
    let hooks = [
        // The postgres user with fixed ids, before the package would create one (minbase
        // has no useradd yet at this point; the package's adduser then finds it).
        format!(
            "--essential-hook=echo 'postgres:x:{PG_UID}:{PG_UID}:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash' >> \"$1\"/etc/passwd && \
             echo 'postgres:*:20000:0:99999:7:::' >> \"$1\"/etc/shadow && \
             echo 'postgres:x:{PG_UID}:' >> \"$1\"/etc/group && \
             echo 'postgres:!::' >> \"$1\"/etc/gshadow"
        ),
        // No default cluster: patroni makes its own data directory.
        "--customize-hook=chroot \"$1\" pg_dropcluster 15 main".to_owned(),
        // No JIT: LLVM is most of the size (PostgreSQL runs without it, jit is then off).
        // No perl: only postgresql-common's wrapper scripts use it, and patroni calls the
        // binaries in /usr/lib/postgresql/15/bin itself. No charmaps: initdb uses C.UTF-8.
        "--customize-hook=chroot \"$1\" dpkg --purge --force-depends libllvm14 libz3-4 \
         perl perl-modules-5.36 libperl5.36 && \
         rm -rf \"$1\"/usr/lib/postgresql/15/lib/llvmjit* \"$1\"/usr/lib/postgresql/15/lib/bitcode \
         \"$1\"/usr/share/i18n"
            .to_owned(),
        // Barman Cloud talks to S3 only: botocore's models of AWS's other ~400 services are
        // most of its size (docs/image.md).
        "--customize-hook=find \"$1\"/usr/lib/python3/dist-packages/botocore/data \
         -mindepth 1 -maxdepth 1 -type d ! -name s3 ! -name sts -exec rm -rf {} +"
            .to_owned(),
        // The sockets directory, writable by postgres (an emptyDir may replace it).
        format!(
            "--customize-hook=install -d -m 2775 -o {PG_UID} -g {PG_UID} \"$1\"/var/run/postgresql"
        ),
        "--customize-hook=rm -rf \"$1\"/var/lib/apt/lists/* \"$1\"/var/cache/apt/* \
         \"$1\"/var/cache/debconf/*-old \"$1\"/var/log/* \"$1\"/usr/share/doc \
         \"$1\"/usr/share/man \"$1\"/usr/share/info \"$1\"/usr/share/locale \
         \"$1\"/usr/share/lintian"
            .to_owned(),
    ];
    let mut args = vec![
        "--variant=minbase".to_owned(),
        format!("--include={PACKAGES}"),
        "--dpkgopt=path-exclude=/usr/share/doc/*".to_owned(),
        "--dpkgopt=path-exclude=/usr/share/man/*".to_owned(),
        "--dpkgopt=path-exclude=/usr/share/locale/*".to_owned(),
        "--dpkgopt=path-exclude=/usr/share/info/*".to_owned(),
        "--aptopt=APT::Install-Recommends \"false\"".to_owned(),
    ];
    args.extend(hooks);
    args
}

/// The binaries of the image, built by `cargo build --release` of their packages.
const BINARIES: [&str; 4] = [
    "patroni",
    "patronictl",
    "patroni-k8s-callback",
    "patroni-backup",
];

/// `cargo build --release` of the binaries' packages; their paths.
fn build_binaries(root: &Path) -> anyhow::Result<[PathBuf; 4]> {
    run_tool(Command::new(env!("CARGO")).current_dir(root).args([
        "build",
        "--release",
        "-p",
        "patroni",
        "-p",
        "patroni-ctl",
        "-p",
        "patroni-backup",
    ]))?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("release");
    Ok(BINARIES.map(|b| target.join(b)))
}

/// The binaries layer: [`BINARIES`] in `usr/local/bin` and the default configuration
/// `etc/patroni/00-defaults.yml` (`deploy/image/patroni.yml`), owned by root.
fn binaries_layer(binaries: &[PathBuf], staging: &Path, tar: &Path) -> anyhow::Result<()> {
    let bin = staging.join("usr/local/bin");
    std::fs::create_dir_all(&bin)?;
    for b in binaries {
        let name = b.file_name().context("binary name")?;
        std::fs::copy(b, bin.join(name)).with_context(|| format!("copy {}", b.display()))?;
    }
    let etc = staging.join("etc/patroni");
    std::fs::create_dir_all(&etc)?;
    let defaults = workspace_root().join("deploy/image/patroni.yml");
    std::fs::copy(&defaults, etc.join("00-defaults.yml"))
        .with_context(|| format!("copy {}", defaults.display()))?;
    run_tool(
        Command::new("tar")
            .arg("-C")
            .arg(staging)
            .args([
                "--owner=0",
                "--group=0",
                "--numeric-owner",
                "--mtime=1970-01-01",
                "--sort=name",
                "-cf",
            ])
            .arg(tar)
            .args(["etc", "usr"]),
    )
}

fn run_tool(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("run {:?}", cmd.get_program()))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn which(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The repository root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn tempdir_in(parent: &Path, prefix: &str) -> anyhow::Result<PathBuf> {
    let dir = parent.join(format!("{prefix}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    Ok(dir)
}

fn file_size(path: &Path) -> anyhow::Result<u64> {
    Ok(std::fs::metadata(path)
        .with_context(|| format!("stat {}", path.display()))?
        .len())
}
