//! Writes a playable MP4 of a given size and length without an encoder: a mid-grey H.264
//! Baseline stream (one IDR picture of DC-predicted macroblocks with no residual, then
//! P pictures of skipped macroblocks) in an `avc1` track. The 4K upscaler's output must be
//! 3× its input's bucket; the image has no ffmpeg to make one, and any player, ffprobe and
//! ffmpeg read this one.

use std::io::Write;
use std::path::Path;

/// Bits, most significant first, as H.264's syntax writes them.
#[derive(Default)]
struct Bits {
    bytes: Vec<u8>,
    acc: u8,
    used: u8,
}

impl Bits {
    fn bit(&mut self, b: bool) {
        self.acc = (self.acc << 1) | u8::from(b);
        self.used += 1;
        if self.used == 8 {
            self.bytes.push(self.acc);
            self.acc = 0;
            self.used = 0;
        }
    }

    /// `u(n)`: an unsigned number in `n` bits.
    fn u(&mut self, n: u32, value: u32) {
        for i in (0..n).rev() {
            self.bit(value >> i & 1 == 1);
        }
    }

    /// `ue(v)`: Exp-Golomb.
    fn ue(&mut self, value: u32) {
        let coded = u64::from(value) + 1;
        let len = 64 - coded.leading_zeros();
        for _ in 1..len {
            self.bit(false);
        }
        for i in (0..len).rev() {
            self.bit(coded >> i & 1 == 1);
        }
    }

    /// `rbsp_trailing_bits`: a one, then zeros to the byte boundary.
    fn finish(mut self) -> Vec<u8> {
        self.bit(true);
        while self.used != 0 {
            self.bit(false);
        }
        self.bytes
    }
}

/// A NAL unit: its header byte, then the payload with emulation prevention (no `00 00 0x`
/// with x ≤ 3 inside).
fn nal(header: u8, rbsp: &[u8]) -> Vec<u8> {
    let mut out = vec![header];
    let mut zeros = 0;
    for &b in rbsp {
        if zeros >= 2 && b <= 3 {
            out.push(3);
            zeros = 0;
        }
        out.push(b);
        zeros = if b == 0 { zeros + 1 } else { 0 };
    }
    out
}

const PROFILE: u8 = 66; // Baseline
const COMPAT: u8 = 0xC0; // constraint_set0 and 1: also Constrained Baseline
const LEVEL: u8 = 52;
const FRAME_NUM_BITS: u32 = 16;

struct Geometry {
    mbs_wide: u32,
    mbs_high: u32,
    crop_right: u32,
    crop_bottom: u32,
}

impl Geometry {
    fn new(width: u32, height: u32) -> Self {
        let (mbs_wide, mbs_high) = (width.div_ceil(16), height.div_ceil(16));
        Self {
            mbs_wide,
            mbs_high,
            // 4:2:0 crops in units of two pixels.
            crop_right: (mbs_wide * 16 - width) / 2,
            crop_bottom: (mbs_high * 16 - height) / 2,
        }
    }

    fn macroblocks(&self) -> u32 {
        self.mbs_wide * self.mbs_high
    }
}

fn sps(g: &Geometry) -> Vec<u8> {
    let mut b = Bits::default();
    b.u(8, PROFILE.into());
    b.u(8, COMPAT.into());
    b.u(8, LEVEL.into());
    b.ue(0); // seq_parameter_set_id
    b.ue(FRAME_NUM_BITS - 4); // log2_max_frame_num_minus4
    b.ue(2); // pic_order_cnt_type: output order is decoding order
    b.ue(1); // max_num_ref_frames
    b.bit(false); // gaps_in_frame_num_value_allowed_flag
    b.ue(g.mbs_wide - 1);
    b.ue(g.mbs_high - 1);
    b.bit(true); // frame_mbs_only_flag
    b.bit(true); // direct_8x8_inference_flag
    let crop = g.crop_right > 0 || g.crop_bottom > 0;
    b.bit(crop);
    if crop {
        b.ue(0);
        b.ue(g.crop_right);
        b.ue(0);
        b.ue(g.crop_bottom);
    }
    b.bit(false); // vui_parameters_present_flag
    nal(0x67, &b.finish())
}

fn pps() -> Vec<u8> {
    let mut b = Bits::default();
    b.ue(0); // pic_parameter_set_id
    b.ue(0); // seq_parameter_set_id
    b.bit(false); // entropy_coding_mode_flag: CAVLC
    b.bit(false); // bottom_field_pic_order_in_frame_present_flag
    b.ue(0); // num_slice_groups_minus1
    b.ue(0); // num_ref_idx_l0_default_active_minus1
    b.ue(0); // num_ref_idx_l1_default_active_minus1
    b.bit(false); // weighted_pred_flag
    b.u(2, 0); // weighted_bipred_idc
    b.ue(0); // pic_init_qp_minus26 (se 0 is ue 0)
    b.ue(0); // pic_init_qs_minus26
    b.ue(0); // chroma_qp_index_offset
    b.bit(false); // deblocking_filter_control_present_flag
    b.bit(false); // constrained_intra_pred_flag
    b.bit(false); // redundant_pic_cnt_present_flag
    nal(0x68, &b.finish())
}

/// The first picture: every macroblock Intra 16×16 with DC prediction and no residual, so
/// the whole picture is the predictor's 128 (mid-grey).
fn idr(g: &Geometry) -> Vec<u8> {
    let mut b = Bits::default();
    b.ue(0); // first_mb_in_slice
    b.ue(7); // slice_type: I, every slice of the picture
    b.ue(0); // pic_parameter_set_id
    b.u(FRAME_NUM_BITS, 0);
    b.ue(0); // idr_pic_id
    b.bit(false); // no_output_of_prior_pics_flag
    b.bit(false); // long_term_reference_flag
    b.ue(0); // slice_qp_delta
    for _ in 0..g.macroblocks() {
        b.ue(3); // mb_type I_16x16_2_0_0: DC prediction, no coded luma or chroma
        b.ue(0); // intra_chroma_pred_mode: DC
        b.ue(0); // mb_qp_delta
        b.bit(true); // coeff_token of the luma DC block: no coefficients
    }
    nal(0x65, &b.finish())
}

/// A later picture: every macroblock skipped (a copy of the one before).
fn skipped(g: &Geometry, frame_num: u32) -> Vec<u8> {
    let mut b = Bits::default();
    b.ue(0); // first_mb_in_slice
    b.ue(5); // slice_type: P, every slice of the picture
    b.ue(0); // pic_parameter_set_id
    b.u(FRAME_NUM_BITS, frame_num & ((1 << FRAME_NUM_BITS) - 1));
    b.bit(false); // num_ref_idx_active_override_flag
    b.bit(false); // ref_pic_list_modification_flag_l0
    b.bit(false); // adaptive_ref_pic_marking_mode_flag
    b.ue(0); // slice_qp_delta
    b.ue(g.macroblocks()); // mb_skip_run: all of them
    nal(0x41, &b.finish())
}

/// An ISO BMFF box.
fn bx(kind: &[u8; 4], parts: &[&[u8]]) -> Vec<u8> {
    let len: usize = 8 + parts.iter().map(|p| p.len()).sum::<usize>();
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&(len as u32).to_be_bytes());
    out.extend_from_slice(kind);
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

/// A full box: version 0 and `flags`, then the body.
fn full(kind: &[u8; 4], flags: u32, body: &[u8]) -> Vec<u8> {
    bx(kind, &[&flags.to_be_bytes(), body])
}

fn words(values: &[u32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}

const MATRIX: [u32; 9] = [0x0001_0000, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000];

/// Writes `frames` frames of `width`×`height` mid-grey at `fps` to `path` as MP4.
pub fn write_grey(
    path: &Path,
    width: u32,
    height: u32,
    frames: u32,
    fps: u32,
) -> std::io::Result<()> {
    let (width, height) = (width.max(2) & !1, height.max(2) & !1);
    let (frames, fps) = (frames.max(1), fps.max(1));
    let g = Geometry::new(width, height);
    let (sps, pps) = (sps(&g), pps());
    let mut samples: Vec<Vec<u8>> = Vec::with_capacity(frames as usize);
    let first = idr(&g);
    for i in 0..frames {
        let nal = if i == 0 {
            first.clone()
        } else {
            skipped(&g, i)
        };
        let mut sample = (nal.len() as u32).to_be_bytes().to_vec();
        sample.extend_from_slice(&nal);
        samples.push(sample);
    }
    let ftyp = bx(b"ftyp", &[b"isom", &words(&[0x200]), b"isomiso2avc1mp41"]);
    let media: usize = samples.iter().map(Vec::len).sum();
    let data_at = (ftyp.len() + 8) as u32;

    let movie_scale = 1000u32;
    let movie_duration = (u64::from(frames) * u64::from(movie_scale) / u64::from(fps)) as u32;
    let mvhd = full(
        b"mvhd",
        0,
        &[
            words(&[0, 0, movie_scale, movie_duration, 0x0001_0000]),
            vec![0x01, 0x00],
            vec![0; 10],
            words(&MATRIX),
            vec![0; 24],
            words(&[2]),
        ]
        .concat(),
    );
    let tkhd = full(
        b"tkhd",
        3,
        &[
            words(&[0, 0, 1, 0, movie_duration, 0, 0]),
            vec![0; 8], // layer, alternate group, volume, reserved
            words(&MATRIX),
            words(&[width << 16, height << 16]),
        ]
        .concat(),
    );
    let mdhd = full(
        b"mdhd",
        0,
        &[words(&[0, 0, fps, frames]), vec![0x55, 0xC4, 0, 0]].concat(),
    );
    let hdlr = full(
        b"hdlr",
        0,
        &[&words(&[0])[..], b"vide", &[0; 12], b"VideoHandler\0"].concat(),
    );
    let vmhd = full(b"vmhd", 1, &[0; 8]);
    let dinf = bx(
        b"dinf",
        &[&full(
            b"dref",
            0,
            &[words(&[1]), full(b"url ", 1, &[])].concat(),
        )],
    );
    let avcc = bx(
        b"avcC",
        &[
            &[1, PROFILE, COMPAT, LEVEL, 0xFF, 0xE1],
            &(sps.len() as u16).to_be_bytes(),
            &sps,
            &[1],
            &(pps.len() as u16).to_be_bytes(),
            &pps,
        ],
    );
    let mut name = [0u8; 32];
    name[0] = 9;
    name[1..10].copy_from_slice(b"cosmossim");
    let avc1 = bx(
        b"avc1",
        &[
            &[0, 0, 0, 0, 0, 0, 0, 1],
            &[0; 16],
            &(width as u16).to_be_bytes(),
            &(height as u16).to_be_bytes(),
            &words(&[0x0048_0000, 0x0048_0000, 0]),
            &1u16.to_be_bytes(),
            &name,
            &[0x00, 0x18, 0xFF, 0xFF],
            &avcc,
        ],
    );
    let stsd = full(b"stsd", 0, &[words(&[1]), avc1].concat());
    let stts = full(b"stts", 0, &words(&[1, frames, 1]));
    let stss = full(b"stss", 0, &words(&[1, 1]));
    let stsc = full(b"stsc", 0, &words(&[1, 1, frames, 1]));
    let sizes: Vec<u32> = samples.iter().map(|s| s.len() as u32).collect();
    let stsz = full(b"stsz", 0, &[words(&[0, frames]), words(&sizes)].concat());
    let stco = full(b"stco", 0, &words(&[1, data_at]));
    let stbl = bx(b"stbl", &[&stsd, &stts, &stss, &stsc, &stsz, &stco]);
    let minf = bx(b"minf", &[&vmhd, &dinf, &stbl]);
    let mdia = bx(b"mdia", &[&mdhd, &hdlr, &minf]);
    let trak = bx(b"trak", &[&tkhd, &mdia]);
    let moov = bx(b"moov", &[&mvhd, &trak]);

    let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
    file.write_all(&ftyp)?;
    file.write_all(&((media + 8) as u32).to_be_bytes())?;
    file.write_all(b"mdat")?;
    for s in &samples {
        file.write_all(s)?;
    }
    file.write_all(&moov)?;
    file.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_golomb_codes() {
        let mut b = Bits::default();
        for v in [0, 1, 2, 3] {
            b.ue(v);
        }
        // 1 010 011 00100 -> 1010 0110 0100 + stop bit 1 + 000
        assert_eq!(b.finish(), vec![0b1010_0110, 0b0100_1000]);
    }

    #[test]
    fn start_code_patterns_are_escaped() {
        assert_eq!(
            nal(0x65, &[0, 0, 1, 0, 0, 0]),
            vec![0x65, 0, 0, 3, 1, 0, 0, 3, 0]
        );
    }

    #[test]
    fn the_sims_reader_reads_what_it_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("up.mp4");
        write_grey(&path, 3840, 2112, 7, 24).unwrap();
        let facts = crate::mp4::probe(&path).unwrap();
        assert_eq!(
            facts,
            crate::mp4::VideoFacts {
                frames: 7,
                width: 3840,
                height: 2112
            }
        );
    }
}
