//! tracktable-gen: deterministic, realistic Segment-spec traffic, for demos, tests and benches.
//!
//! [`Generator`] yields NDJSON lines: sessions of a fixed population of web and mobile
//! users sending all six Segment call types with the semantic specs' events and
//! properties (E-commerce, Video, Mobile, B2B SaaS), realistic `context`s and the four
//! timestamps. A long run keeps growing the schema (new properties every few thousand
//! lines, a new event now and then); `drift_rate` makes property values change JSON
//! type and `bad_rate` mixes in malformed lines of every kind the decoder rejects.
//! [`write_dir`] writes the stream as gzip NDJSON objects.
//!
//! Everything derives from `GenConfig::seed` through one ChaCha8 stream (portable
//! across platforms), including the stream's start date: never the wall clock.

mod catalog;
mod clock;
mod json_out;
mod malformed;
mod population;
#[cfg(test)]
mod tests;
pub mod to_s3;
mod traffic;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use flate2::Compression;
use flate2::write::GzEncoder;
use rand::Rng;

pub use malformed::Malformed;
use traffic::Traffic;

/// What to generate. The same config always produces the same bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct GenConfig {
    pub events: u64,
    pub seed: u64,
    /// Probability that a property value has a different JSON type than usual.
    pub drift_rate: f64,
    /// Probability that a line is malformed (each kind of rejection in turn).
    pub bad_rate: f64,
}

/// Counts of what was written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GenSummary {
    pub objects: u64,
    pub lines: u64,
    pub bad_lines: u64,
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum GenError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// One generated line, without its trailing newline.
///
/// Bytes rather than a `String` because [`Malformed::InvalidUtf8`] lines are, on
/// purpose, not UTF-8; every other line is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedLine {
    pub bytes: Vec<u8>,
    /// `Some` when the line is malformed, saying how.
    pub bad: Option<Malformed>,
}

impl GeneratedLine {
    pub fn is_bad(&self) -> bool {
        self.bad.is_some()
    }
}

/// The line stream of a [`GenConfig`]: `config.events` lines, then `None`.
pub struct Generator {
    traffic: Traffic,
    remaining: u64,
    bad_rate: f64,
    /// Bad lines so far; malformed kinds are used in turn so each one appears.
    bad_lines: u64,
}

/// The lines of `config`, as an iterator.
pub fn lines(config: &GenConfig) -> Generator {
    Generator::new(config)
}

impl Generator {
    pub fn new(config: &GenConfig) -> Generator {
        Generator {
            traffic: Traffic::new(config.seed, config.drift_rate),
            remaining: config.events,
            bad_rate: config.bad_rate,
            bad_lines: 0,
        }
    }

    /// Writes the next line into `buf` (cleared first), without allocating.
    ///
    /// Returns `None` when the stream is finished, else `Some(bad)` where `bad` says
    /// whether and how the line is malformed.
    pub fn next_into(&mut self, buf: &mut Vec<u8>) -> Option<Option<Malformed>> {
        self.remaining = self.remaining.checked_sub(1)?;
        buf.clear();
        let bad = self.bad_rate > 0.0 && self.traffic.rng().random::<f64>() < self.bad_rate;
        if !bad {
            self.traffic.write_message(buf, false);
            return Some(None);
        }
        let kind = Malformed::ALL[(self.bad_lines % Malformed::ALL.len() as u64) as usize];
        self.bad_lines += 1;
        self.traffic.write_message(buf, true);
        malformed::corrupt(buf, kind, self.traffic.rng());
        Some(Some(kind))
    }
}

impl Iterator for Generator {
    type Item = GeneratedLine;

    fn next(&mut self) -> Option<GeneratedLine> {
        let mut bytes = Vec::with_capacity(1536);
        let bad = self.next_into(&mut bytes)?;
        Some(GeneratedLine { bytes, bad })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let remaining = usize::try_from(self.remaining).unwrap_or(usize::MAX);
        (remaining, Some(remaining))
    }
}

/// The name of the `index`th object (1-based): `events-000001.ndjson.gz`. The number
/// is zero-padded to the width the run needs (at least 6), so names sort in order.
pub fn object_name(index: u64, objects: u64) -> String {
    let width = objects.max(1).ilog10() as usize + 1;
    format!("events-{index:0width$}.ndjson.gz", width = width.max(6))
}

/// Writes `config.events` lines as gzip NDJSON objects of `per_object` lines under `out`.
///
/// Objects are named by [`object_name`]; the last one holds the remainder. Existing
/// files with the same names are overwritten; others are left alone.
pub fn write_dir(config: &GenConfig, out: &Path, per_object: u64) -> Result<GenSummary, GenError> {
    let error = |path: &Path| {
        let path = path.display().to_string();
        move |source| GenError::Write { path, source }
    };
    std::fs::create_dir_all(out).map_err(error(out))?;
    let per_object = per_object.max(1);
    let objects = config.events.div_ceil(per_object);
    let mut generator = Generator::new(config);
    let mut line = Vec::with_capacity(4096);
    let mut summary = GenSummary::default();
    for index in 1..=objects {
        let path = out.join(object_name(index, objects));
        let file = File::create(&path).map_err(error(&path))?;
        let counted = CountingWriter {
            inner: BufWriter::with_capacity(1 << 16, file),
            bytes: 0,
        };
        // Batch lines before the encoder: deflating 64 KiB at a time is much faster
        // than one call per line.
        let mut writer =
            BufWriter::with_capacity(1 << 16, GzEncoder::new(counted, Compression::fast()));
        for _ in 0..per_object {
            let Some(bad) = generator.next_into(&mut line) else {
                break;
            };
            line.push(b'\n');
            writer.write_all(&line).map_err(error(&path))?;
            summary.lines += 1;
            summary.bad_lines += u64::from(bad.is_some());
        }
        let encoder = writer
            .into_inner()
            .map_err(|e| error(&path)(e.into_error()))?;
        let mut counted = encoder.finish().map_err(error(&path))?;
        counted.flush().map_err(error(&path))?;
        summary.bytes += counted.bytes;
        summary.objects += 1;
    }
    Ok(summary)
}

/// Counts the compressed bytes on their way to the file.
struct CountingWriter<W> {
    inner: W,
    bytes: u64,
}

impl<W: Write> Write for CountingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.bytes += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
