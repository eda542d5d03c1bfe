//! A generated test clip: an `ffmpeg` test pattern with a sine tone, H.264/AAC in MP4, so the
//! scenario needs no media file of its own.

use anyhow::{bail, Context as _};

/// What the clip looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClipSpec {
    pub width: u32,
    pub height: u32,
    pub seconds: u32,
}

impl Default for ClipSpec {
    /// The scenario's clip: 3 s of 854x480 (480p), small enough to transcode in seconds.
    fn default() -> Self {
        ClipSpec {
            width: 854,
            height: 480,
            seconds: 3,
        }
    }
}

/// Makes the clip with `ffmpeg` and returns its bytes.
pub async fn generate(spec: ClipSpec) -> anyhow::Result<Vec<u8>> {
    let file =
        std::env::temp_dir().join(format!("circ-clip-{}.mp4", uuid::Uuid::new_v4().simple()));
    let output = tokio::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!(
            "testsrc=size={}x{}:rate=25",
            spec.width, spec.height
        ))
        .args(["-f", "lavfi", "-i", "sine=frequency=440", "-t"])
        .arg(spec.seconds.to_string())
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-shortest",
        ])
        .arg(&file)
        .output()
        .await
        .context("ffmpeg could not be started (is it installed? scripts/stack up installs it)")?;
    if !output.status.success() {
        let _ = tokio::fs::remove_file(&file).await;
        bail!(
            "ffmpeg made no clip: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let bytes = tokio::fs::read(&file).await.context("reading the clip")?;
    let _ = tokio::fs::remove_file(&file).await;
    Ok(bytes)
}
