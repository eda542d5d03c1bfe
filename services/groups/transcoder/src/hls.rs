//! The HLS rendition ladder and the one `ffmpeg` run that produces every rendition of a video.

use std::path::Path;

use crate::media::even;

/// One rung of the ladder: a label, the size of the frame's shorter side, the video bitrate.
#[derive(Debug, Clone, Copy)]
pub struct Rung {
    pub name: &'static str,
    pub short_side: i32,
    pub bitrate_kbps: i32,
}

/// Lowest first. A source gets every rung its size allows without upscaling, and at least the
/// lowest (scaled no larger than the source).
pub const LADDER: [Rung; 3] = [
    Rung {
        name: "360p",
        short_side: 360,
        bitrate_kbps: 800,
    },
    Rung {
        name: "480p",
        short_side: 480,
        bitrate_kbps: 1400,
    },
    Rung {
        name: "720p",
        short_side: 720,
        bitrate_kbps: 2800,
    },
];

/// Audio bitrate of every rendition.
pub const AUDIO_KBPS: i32 = 128;

/// One rendition to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendition {
    pub name: String,
    pub width: i32,
    pub height: i32,
    pub bitrate_kbps: i32,
}

/// The renditions of a `width`x`height` (display size) source, lowest first.
pub fn ladder(width: i32, height: i32) -> Vec<Rendition> {
    let short = width.min(height);
    let mut out: Vec<Rendition> = LADDER
        .iter()
        .filter(|rung| rung.short_side <= short)
        .map(|rung| sized(rung, rung.short_side, width, height))
        .collect();
    if out.is_empty() {
        out.push(sized(&LADDER[0], short, width, height));
    }
    out
}

/// The ladder restricted to `labels` (as requested); the lowest rung when none of them applies.
pub fn select(width: i32, height: i32, labels: &[String]) -> Vec<Rendition> {
    let all = ladder(width, height);
    let chosen: Vec<Rendition> = all
        .iter()
        .filter(|r| labels.iter().any(|l| l == &r.name))
        .cloned()
        .collect();
    if chosen.is_empty() {
        all.into_iter().take(1).collect()
    } else {
        chosen
    }
}

fn sized(rung: &Rung, short_side: i32, width: i32, height: i32) -> Rendition {
    let short = even(f64::from(short_side));
    let (w, h) = if width >= height {
        (
            even(f64::from(short) * f64::from(width) / f64::from(height)),
            short,
        )
    } else {
        (
            short,
            even(f64::from(short) * f64::from(height) / f64::from(width)),
        )
    };
    Rendition {
        name: rung.name.to_string(),
        width: w,
        height: h,
        bitrate_kbps: rung.bitrate_kbps,
    }
}

/// Encoder settings of a run.
#[derive(Debug, Clone)]
pub struct Encoding {
    /// x264 preset (`ultrafast` ... `veryslow`).
    pub preset: String,
    /// Target HLS segment length in seconds (key frames are forced on its boundaries).
    pub segment_secs: u32,
}

/// Name of the master playlist in the output folder.
pub const MASTER: &str = "master.m3u8";

/// `ffmpeg` arguments writing `<out>/<rendition>/index.m3u8` + `seg_NNN.ts` for every rendition
/// and `<out>/master.m3u8`, in one decode of the source.
pub fn ffmpeg_args(
    source: &Path,
    out: &Path,
    renditions: &[Rendition],
    has_audio: bool,
    encoding: &Encoding,
) -> Vec<String> {
    let n = renditions.len();
    let mut graph = if n == 1 {
        "[0:v]null[s0];".to_string()
    } else {
        format!(
            "[0:v]split={n}{};",
            (0..n).map(|i| format!("[s{i}]")).collect::<String>()
        )
    };
    let scales: Vec<String> = renditions
        .iter()
        .enumerate()
        .map(|(i, r)| format!("[s{i}]scale={}:{},setsar=1[v{i}]", r.width, r.height))
        .collect();
    graph.push_str(&scales.join(";"));

    let mut args: Vec<String> = vec![
        "-nostdin".into(),
        "-v".into(),
        "error".into(),
        "-y".into(),
        "-i".into(),
        source.display().to_string(),
        "-filter_complex".into(),
        graph,
    ];
    let mut streams = Vec::with_capacity(n);
    for (i, r) in renditions.iter().enumerate() {
        args.extend(["-map".into(), format!("[v{i}]")]);
        if has_audio {
            args.extend(["-map".into(), "0:a:0".into()]);
            streams.push(format!("v:{i},a:{i},name:{}", r.name));
        } else {
            streams.push(format!("v:{i},name:{}", r.name));
        }
        args.extend([
            format!("-b:v:{i}"),
            format!("{}k", r.bitrate_kbps),
            format!("-maxrate:v:{i}"),
            format!("{}k", r.bitrate_kbps * 107 / 100),
            format!("-bufsize:v:{i}"),
            format!("{}k", r.bitrate_kbps * 3 / 2),
        ]);
    }
    let segment = encoding.segment_secs.max(1);
    args.extend(
        [
            "-c:v",
            "libx264",
            "-preset",
            &encoding.preset,
            "-pix_fmt",
            "yuv420p",
            "-sc_threshold",
            "0",
            "-force_key_frames",
            &format!("expr:gte(t,n_forced*{segment})"),
        ]
        .map(String::from),
    );
    if has_audio {
        args.extend(
            ["-c:a", "aac", "-b:a", &format!("{AUDIO_KBPS}k"), "-ac", "2"].map(String::from),
        );
    }
    args.extend(
        [
            "-f",
            "hls",
            "-hls_time",
            &segment.to_string(),
            "-hls_playlist_type",
            "vod",
            "-hls_flags",
            "independent_segments",
            "-hls_segment_filename",
            &out.join("%v").join("seg_%03d.ts").display().to_string(),
            "-master_pl_name",
            MASTER,
            "-var_stream_map",
            &streams.join(" "),
            &out.join("%v").join("index.m3u8").display().to_string(),
        ]
        .map(String::from),
    );
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(renditions: &[Rendition]) -> Vec<(&str, i32, i32)> {
        renditions
            .iter()
            .map(|r| (r.name.as_str(), r.width, r.height))
            .collect()
    }

    #[test]
    fn the_ladder_stops_at_the_source_size() {
        assert_eq!(
            names(&ladder(854, 480)),
            vec![("360p", 640, 360), ("480p", 854, 480)]
        );
        assert_eq!(
            names(&ladder(1920, 1080)),
            vec![("360p", 640, 360), ("480p", 852, 480), ("720p", 1280, 720)]
        );
        // Portrait: the shorter side is the width.
        assert_eq!(
            names(&ladder(720, 1280)),
            vec![("360p", 360, 640), ("480p", 480, 852), ("720p", 720, 1280)]
        );
        // Smaller than the lowest rung: the lowest, not upscaled.
        assert_eq!(names(&ladder(320, 241)), vec![("360p", 318, 240)]);
    }

    #[test]
    fn requested_labels_restrict_the_ladder() {
        let labels = vec!["720p".to_string(), "360p".to_string()];
        assert_eq!(
            names(&select(1280, 720, &labels)),
            vec![("360p", 640, 360), ("720p", 1280, 720)]
        );
        assert_eq!(
            names(&select(854, 480, &["1080p".to_string()])),
            vec![("360p", 640, 360)]
        );
    }

    #[test]
    fn one_run_maps_every_rendition() {
        let args = ffmpeg_args(
            Path::new("/s/in.mp4"),
            Path::new("/s/out"),
            &ladder(854, 480),
            true,
            &Encoding {
                preset: "ultrafast".into(),
                segment_secs: 2,
            },
        );
        let joined = args.join(" ");
        assert!(joined.contains("[0:v]split=2[s0][s1];[s0]scale=640:360,setsar=1[v0];"));
        assert!(joined.contains("-var_stream_map v:0,a:0,name:360p v:1,a:1,name:480p"));
        assert!(joined.contains("-b:v:1 1400k"));
        assert!(joined.ends_with("/s/out/%v/index.m3u8"));
        let silent = ffmpeg_args(
            Path::new("in"),
            Path::new("out"),
            &ladder(320, 240),
            false,
            &Encoding {
                preset: "veryfast".into(),
                segment_secs: 4,
            },
        );
        assert!(!silent.iter().any(|a| a == "0:a:0"));
        assert!(silent.join(" ").contains("[0:v]null[s0];[s0]scale=320:240"));
    }
}
