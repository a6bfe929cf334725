//! The boot-time rows of `image-builder bench`: QEMU start to `atoll: system
//! ready` for the default system, against the floor, the same image with a
//! kernel that powers off at its entry point (feature `exit-at-entry`), in the
//! same run, under BIOS and UEFI. The difference is the kernel's own boot:
//! heap and clock set-up, decoding the bundle, compiling and starting every
//! service until each has run once. A third image, whose kernel translates
//! the boot modules eagerly (atoll-core's `eager-boot`, the configuration
//! before lazy translation), is timed in the same rounds for comparison.

use crate::builder::{self, BuildOptions, Firmware};
use crate::error::{Context, Error};
use crate::qemu;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Boots per measurement, interleaved; the median is reported.
const BOOTS: usize = 5;

/// Median seconds from QEMU start to `system ready`, and to the floor's
/// power-off, under (BIOS, UEFI).
#[derive(Debug, Default)]
pub struct BootTimes {
    pub bios: (Option<f64>, Option<f64>),
    pub uefi: (Option<f64>, Option<f64>),
    /// `system ready` with eager translation at boot, (BIOS, UEFI).
    pub eager: (Option<f64>, Option<f64>),
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied()
}

/// Seconds from QEMU's start until `marker` appears (or QEMU exits with
/// success, when `marker` is `None`).
fn time_boot(image: &Path, options: &qemu::RunOptions, marker: Option<&str>) -> Result<f64, Error> {
    let started = Instant::now();
    match marker {
        Some(marker) => {
            let (seen, console) = qemu::run_until(image, options, marker)?;
            let elapsed = started.elapsed().as_secs_f64();
            if !seen {
                return Err(Error::Other(format!(
                    "`{marker}` did not appear; the console:\n{console}"
                )));
            }
            Ok(elapsed)
        }
        None => {
            let (outcome, console) = qemu::run_captured(image, options)?;
            let elapsed = started.elapsed().as_secs_f64();
            if outcome != qemu::Outcome::Success {
                return Err(Error::Other(format!(
                    "the floor image did not power off ({outcome:?}):\n{console}"
                )));
            }
            Ok(elapsed)
        }
    }
}

/// Builds the default system twice (floor kernel, then the real one) and
/// times both under each firmware.
pub fn run(options: &BuildOptions) -> Result<BootTimes, Error> {
    let path = options.workspace.join("examples/default/system.toml");
    let system = crate::manifest::load(&path).map_err(Error::Diagnostics)?;
    let bench_dir = options.workspace.join("target").join("bench");
    std::fs::create_dir_all(&bench_dir).context(|| format!("creating {}", bench_dir.display()))?;
    let disk = crate::disk::prepare(system.disk.as_ref(), None, &bench_dir.join("boot-disk.img"))?;

    let mut options = options.clone();
    options.firmware = Firmware::Both;
    let with = |feature: &str| {
        let mut changed = options.clone();
        changed.kernel_features = Some(match &options.kernel_features {
            Some(features) => format!("{features},{feature}"),
            None => feature.to_string(),
        });
        changed
    };
    // Each build overwrites the system's images: keep copies.
    let copies = |options: &BuildOptions, prefix: &str| -> Result<Vec<PathBuf>, Error> {
        let built = builder::build(&system, options)?;
        let mut copies = Vec::new();
        for (image, firmware) in [(&built.bios_image, "bios"), (&built.uefi_image, "uefi")] {
            let image = image
                .as_ref()
                .ok_or_else(|| Error::Other("no image was written".into()))?;
            let copy = bench_dir.join(format!("{prefix}-{firmware}.img"));
            std::fs::copy(image, &copy).context(|| format!("copying {}", image.display()))?;
            copies.push(copy);
        }
        Ok(copies)
    };
    let floor_images = copies(&with("exit-at-entry"), "floor")?;
    let eager_images = copies(&with("eager-boot"), "eager")?;
    let real_images = copies(&options, "ready")?;

    let mut times = BootTimes::default();
    for (uefi, index) in [(false, 0), (true, 1)] {
        let (Some(real_image), Some(floor_image), Some(eager_image)) = (
            real_images.get(index),
            floor_images.get(index),
            eager_images.get(index),
        ) else {
            continue;
        };
        let run_options = qemu::RunOptions {
            uefi,
            timeout: Some(Duration::from_secs(120)),
            gdb: false,
            memory_mib: 512,
            disk: disk.clone(),
            network: None,
            control_socket: None,
        };
        let mut ready = Vec::new();
        let mut floor = Vec::new();
        let mut eager = Vec::new();
        for _ in 0..BOOTS {
            floor.push(time_boot(floor_image, &run_options, None)?);
            ready.push(time_boot(
                real_image,
                &run_options,
                Some("atoll: system ready"),
            )?);
            eager.push(time_boot(
                eager_image,
                &run_options,
                Some("atoll: system ready"),
            )?);
        }
        let pair = (median(ready), median(floor));
        if uefi {
            times.uefi = pair;
            times.eager.1 = median(eager);
        } else {
            times.bios = pair;
            times.eager.0 = median(eager);
        }
    }
    Ok(times)
}
