//! Images of the DCS servers the Helm chart deploys (`etcd.deployChart`,
//! `zookeeper.deployChart`), for the lab's real node, which has no registry: OCI archives
//! imported into its containerd in place of the upstream images users pull
//! (`quay.io/coreos/etcd`, the Docker Official Image `zookeeper`). Each runs what the chart
//! runs with the upstream image: `/usr/local/bin/etcd` with etcd's own flags, and
//! `zkServer.sh start-foreground` reading `$ZOOCFGDIR/zoo.cfg`.
//!
//! - **etcd**: upstream's server (`etcdmain`, the release testenv embeds) and `etcdctl`, built
//!   from the Go module `testenv/etcd/` as static programs, in a one-layer image; cached with
//!   the programs ([`crate::gobuild`]).
//! - **ZooKeeper**: Debian bookworm (`mmdebstrap --variant=minbase`) with the server's jar and
//!   its Java libraries (`libzookeeper-java`) and the headless JRE, plus a `zkServer.sh` of
//!   our own (Debian's wants `/etc/zookeeper`); built once per recipe (a few minutes, most of
//!   it downloading the JRE) and cached in [`cache_dir`]`/zookeeper-image/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::gobuild::GoBuild;
use crate::netns::run_command as run;
use crate::oci::{OciImage, build_archive};
use crate::testenv_bin::{cache_dir, testenv_source_dir};
use crate::{Error, Result};

/// The etcd release `testenv/etcd/go.mod` requires: the image's tag.
pub const ETCD_VERSION: &str = "v3.6.4";
/// The name the etcd image is imported as (`localhost/etcd:<ETCD_VERSION>`).
pub const ETCD_IMAGE_NAME: &str = "localhost/etcd";
/// Debian bookworm's ZooKeeper: the image's tag.
pub const ZOOKEEPER_VERSION: &str = "3.8.0";
/// The name the ZooKeeper image is imported as (`localhost/zookeeper:<ZOOKEEPER_VERSION>`).
pub const ZOOKEEPER_IMAGE_NAME: &str = "localhost/zookeeper";
/// Bumped whenever the ZooKeeper recipe changes in a way its text does not show.
const ZOOKEEPER_RECIPE_VERSION: u32 = 1;
/// Debian suites the images are made from (the ZooKeeper image here, patroni-rs's base in
/// `cargo xtask image`).
pub const DEBIAN_SOURCES: [&str; 3] = [
    "deb http://deb.debian.org/debian bookworm main",
    "deb http://deb.debian.org/debian bookworm-updates main",
    "deb http://deb.debian.org/debian-security bookworm-security main",
];
/// `PATH` inside the ZooKeeper image.
const ZOOKEEPER_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// `zkServer.sh` of the ZooKeeper image: the one form of upstream's script the chart uses.
/// The classpath is the jar (its manifest names its dependencies) and slf4j's simple
/// logger, which prints to stderr (the jar has no logging backend of its own).
const ZK_SERVER_SH: &str = r#"#!/bin/sh
# zkServer.sh start-foreground: ZooKeeper with $ZOOCFGDIR/zoo.cfg, in the foreground (as
# upstream's script does in the Docker Official Image).
set -eu
if [ "${1:-}" != start-foreground ]; then
  echo "usage: zkServer.sh start-foreground (this image runs ZooKeeper in the foreground only)" >&2
  exit 64
fi
exec java ${JVMFLAGS:-} -Dzookeeper.admin.enableServer=false \
  -cp /usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar \
  org.apache.zookeeper.server.quorum.QuorumPeerMain "${ZOOCFGDIR:-/conf}/zoo.cfg"
"#;

/// An image archive ready to import.
#[derive(Debug, Clone)]
pub struct StoreImage {
    /// The OCI archive.
    pub archive: PathBuf,
    /// `--base-name` for `ctr images import` ([`crate::import_image`]).
    pub name: &'static str,
    /// Its tag.
    pub tag: &'static str,
}

// === impl StoreImage ===

impl StoreImage {
    /// `name:tag`, as pods name it.
    pub fn reference(&self) -> String {
        format!("{}:{}", self.name, self.tag)
    }
}

/// The etcd image, built (program and archive) when the cache has none for `testenv/etcd/`.
///
/// # Errors
/// The Go build or umoci failed, or the cache is not writable.
pub fn etcd_image() -> Result<StoreImage> {
    let dir = GoBuild {
        name: "etcd",
        module: &testenv_source_dir().join("etcd"),
        packages: &[".", "go.etcd.io/etcd/etcdctl/v3"],
        ldflags: "-s -w",
    }
    .dir(|out, work| {
        let root = work.join("etcd-root");
        let bin = root.join("usr/local/bin");
        std::fs::create_dir_all(&bin).map_err(Error::io("create", &bin))?;
        for name in ["etcd", "etcdctl"] {
            let program = out.join(name);
            std::fs::copy(&program, bin.join(name)).map_err(Error::io("copy", &program))?;
        }
        let layer = work.join("etcd-layer.tar");
        tar_layer(&root, &layer, &["usr"])?;
        build_archive(
            &OciImage {
                layers: &[&layer],
                tag: ETCD_VERSION,
                config: &[
                    "--config.entrypoint".into(),
                    "/usr/local/bin/etcd".into(),
                    "--config.exposedports".into(),
                    "2379/tcp".into(),
                    "--config.exposedports".into(),
                    "2380/tcp".into(),
                ],
            },
            work,
            &out.join("etcd.oci.tar"),
        )?;
        Ok(())
    })?;
    Ok(StoreImage {
        archive: dir.join("etcd.oci.tar"),
        name: ETCD_IMAGE_NAME,
        tag: ETCD_VERSION,
    })
}

/// The ZooKeeper image, built when the cache has none for the current recipe.
///
/// # Errors
/// mmdebstrap, umoci or tar failed (mmdebstrap needs the network to Debian's mirror), or the
/// cache is not writable.
pub fn zookeeper_image() -> Result<StoreImage> {
    let dir = cache_dir().join("zookeeper-image");
    std::fs::create_dir_all(&dir).map_err(Error::io("create", &dir))?;
    let archive = dir.join(format!("zookeeper-v{ZOOKEEPER_RECIPE_VERSION}.oci.tar"));
    let recipe_file = archive.with_extension("recipe");
    let recipe = zookeeper_recipe().join("\n");
    let image = StoreImage {
        archive: archive.clone(),
        name: ZOOKEEPER_IMAGE_NAME,
        tag: ZOOKEEPER_VERSION,
    };
    let current = || {
        archive.exists() && std::fs::read_to_string(&recipe_file).ok().as_deref() == Some(&recipe)
    };
    if current() {
        return Ok(image);
    }
    let lock_path = dir.join("build.lock");
    let lock = std::fs::File::create(&lock_path).map_err(Error::io("create", &lock_path))?;
    lock.lock().map_err(Error::io("lock", &lock_path))?;
    if current() {
        return Ok(image);
    }
    tracing::info!("building the ZooKeeper image with mmdebstrap (a few minutes)");
    let work = dir.join(format!("build-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(Error::io("create", &work))?;
    let rootfs = work.join("rootfs.tar");
    run(
        Command::new("mmdebstrap")
            .args(zookeeper_recipe())
            .arg("bookworm")
            .arg(&rootfs)
            .args(DEBIAN_SOURCES),
        "mmdebstrap the ZooKeeper image",
    )?;
    let config: Vec<String> = [
        "--config.user",
        "1000:1000",
        "--config.env",
        &format!("PATH={ZOOKEEPER_PATH}"),
        "--config.env",
        "ZOOCFGDIR=/conf",
        "--config.workingdir",
        "/",
        "--config.cmd",
        "zkServer.sh",
        "--config.cmd",
        "start-foreground",
        "--config.exposedports",
        "2181/tcp",
    ]
    .map(String::from)
    .into();
    build_archive(
        &OciImage {
            layers: &[&rootfs],
            tag: ZOOKEEPER_VERSION,
            config: &config,
        },
        &work,
        &archive,
    )?;
    std::fs::write(&recipe_file, &recipe).map_err(Error::io("write", &recipe_file))?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(image)
}

/// mmdebstrap's options for the ZooKeeper image.
fn zookeeper_recipe() -> Vec<String> {
    let script = ZK_SERVER_SH.replace('\'', r"'\''");
    vec![
        "--variant=minbase".to_owned(),
        "--include=libzookeeper-java,default-jre-headless".to_owned(),
        "--aptopt=APT::Install-Recommends \"false\"".to_owned(),
        "--dpkgopt=path-exclude=/usr/share/doc/*".to_owned(),
        "--dpkgopt=path-exclude=/usr/share/man/*".to_owned(),
        "--dpkgopt=path-exclude=/usr/share/locale/*".to_owned(),
        // The JRE's postinst registers its man page as an alternative: the directory must
        // exist even though the pages are excluded.
        "--essential-hook=mkdir -p \"$1\"/usr/share/man/man1".to_owned(),
        // Where the chart mounts zoo.cfg, the data and the logs.
        "--customize-hook=mkdir -p \"$1\"/conf \"$1\"/data \"$1\"/logs".to_owned(),
        format!(
            "--customize-hook=printf '%s' '{script}' > \"$1\"/usr/local/bin/zkServer.sh && \
             chmod 0755 \"$1\"/usr/local/bin/zkServer.sh"
        ),
        "--customize-hook=rm -rf \"$1\"/var/lib/apt/lists/* \"$1\"/var/cache/apt/* \
         \"$1\"/var/log/*"
            .to_owned(),
    ]
}

/// Tars `dirs` of `root` as a layer owned by root, reproducibly.
fn tar_layer(root: &Path, layer: &Path, dirs: &[&str]) -> Result<()> {
    run(
        Command::new("tar")
            .arg("-C")
            .arg(root)
            .args([
                "--owner=0",
                "--group=0",
                "--numeric-owner",
                "--mtime=1970-01-01",
                "--sort=name",
                "-cf",
            ])
            .arg(layer)
            .args(dirs),
        "tar an image layer",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The recipe's hook writes the start script verbatim, quotes included.
    #[test]
    fn the_recipe_writes_the_start_script() {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(root.path().join("usr/local/bin")).expect("dir");
        let hook = zookeeper_recipe()
            .into_iter()
            .find_map(|a| {
                a.strip_prefix("--customize-hook=")
                    .filter(|h| h.contains("zkServer.sh &&"))
                    .map(str::to_owned)
            })
            .expect("the hook");
        // mmdebstrap runs a hook as `sh -c HOOK exec ROOT`.
        let out = Command::new("sh")
            .args(["-c", &hook, "exec"])
            .arg(root.path())
            .output()
            .expect("sh");
        assert!(out.status.success(), "{out:?}");
        let written =
            std::fs::read_to_string(root.path().join("usr/local/bin/zkServer.sh")).expect("read");
        assert_eq!(written, ZK_SERVER_SH);
    }
}
