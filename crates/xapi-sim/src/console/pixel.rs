//! RFB pixel formats (ServerInit / SetPixelFormat) and conversion of palette colours to pixel bytes.

use super::screen::PALETTE;

/// An RFB PIXEL_FORMAT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelFormat {
    pub bits_per_pixel: u8,
    pub depth: u8,
    pub big_endian: bool,
    pub true_colour: bool,
    pub red_max: u16,
    pub green_max: u16,
    pub blue_max: u16,
    pub red_shift: u8,
    pub green_shift: u8,
    pub blue_shift: u8,
}

impl PixelFormat {
    /// The server's native format: 32 bpp, depth 24, little endian, 8 bits per channel (xRGB).
    pub const NATIVE: PixelFormat = PixelFormat {
        bits_per_pixel: 32,
        depth: 24,
        big_endian: false,
        true_colour: true,
        red_max: 255,
        green_max: 255,
        blue_max: 255,
        red_shift: 16,
        green_shift: 8,
        blue_shift: 0,
    };

    /// The 16-byte wire form.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0] = self.bits_per_pixel;
        b[1] = self.depth;
        b[2] = self.big_endian as u8;
        b[3] = self.true_colour as u8;
        b[4..6].copy_from_slice(&self.red_max.to_be_bytes());
        b[6..8].copy_from_slice(&self.green_max.to_be_bytes());
        b[8..10].copy_from_slice(&self.blue_max.to_be_bytes());
        b[10] = self.red_shift;
        b[11] = self.green_shift;
        b[12] = self.blue_shift;
        b
    }

    /// Parse and validate a client's format: 8, 16 or 32 bpp; true colour with shifts that fit, or a colour map
    /// (then pixels are palette indices and the server sends SetColourMapEntries).
    pub fn parse(b: &[u8; 16]) -> Result<PixelFormat, String> {
        let pf = PixelFormat {
            bits_per_pixel: b[0],
            depth: b[1],
            big_endian: b[2] != 0,
            true_colour: b[3] != 0,
            red_max: u16::from_be_bytes([b[4], b[5]]),
            green_max: u16::from_be_bytes([b[6], b[7]]),
            blue_max: u16::from_be_bytes([b[8], b[9]]),
            red_shift: b[10],
            green_shift: b[11],
            blue_shift: b[12],
        };
        if !matches!(pf.bits_per_pixel, 8 | 16 | 32) {
            return Err(format!("unsupported bits-per-pixel {}", pf.bits_per_pixel));
        }
        if pf.true_colour {
            let bits = u32::from(pf.bits_per_pixel);
            for (max, shift) in [
                (pf.red_max, pf.red_shift),
                (pf.green_max, pf.green_shift),
                (pf.blue_max, pf.blue_shift),
            ] {
                let width = 16 - max.leading_zeros();
                if u32::from(shift) + width > bits {
                    return Err("colour channel does not fit the pixel".into());
                }
            }
        }
        Ok(pf)
    }

    /// Bytes per pixel.
    pub fn bytes(self) -> usize {
        usize::from(self.bits_per_pixel / 8)
    }

    /// The pixel value of palette entry `index`.
    pub fn value(self, index: u8) -> u32 {
        if !self.true_colour {
            return u32::from(index);
        }
        let (r, g, b) = PALETTE[usize::from(index) % PALETTE.len()];
        let scale = |c: u8, max: u16| (u32::from(c) * u32::from(max) + 127) / 255;
        (scale(r, self.red_max) << self.red_shift)
            | (scale(g, self.green_max) << self.green_shift)
            | (scale(b, self.blue_max) << self.blue_shift)
    }

    /// Append the wire bytes of palette entry `index`.
    pub fn put(self, index: u8, out: &mut Vec<u8>) {
        let v = self.value(index);
        match (self.bits_per_pixel, self.big_endian) {
            (8, _) => out.push(v as u8),
            (16, false) => out.extend_from_slice(&(v as u16).to_le_bytes()),
            (16, true) => out.extend_from_slice(&(v as u16).to_be_bytes()),
            (_, false) => out.extend_from_slice(&v.to_le_bytes()),
            (_, true) => out.extend_from_slice(&v.to_be_bytes()),
        }
    }

    /// A lookup table palette index → wire bytes.
    pub fn table(self) -> Vec<Vec<u8>> {
        (0..PALETTE.len() as u8)
            .map(|i| {
                let mut v = Vec::with_capacity(4);
                self.put(i, &mut v);
                v
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_round_trip_and_values() {
        let pf = PixelFormat::parse(&PixelFormat::NATIVE.to_bytes()).unwrap();
        assert_eq!(pf, PixelFormat::NATIVE);
        assert_eq!(pf.value(3), 0x00FF_FFFF);
        assert_eq!(pf.value(2), 0x0000_00AA);
        let mut v = Vec::new();
        pf.put(1, &mut v);
        assert_eq!(v, [0xAA, 0xAA, 0xAA, 0]);
    }

    #[test]
    fn rgb565_big_endian_and_bgr233() {
        let mut pf = PixelFormat::NATIVE;
        pf.bits_per_pixel = 16;
        pf.depth = 16;
        pf.big_endian = true;
        (pf.red_max, pf.green_max, pf.blue_max) = (31, 63, 31);
        (pf.red_shift, pf.green_shift, pf.blue_shift) = (11, 5, 0);
        let pf = PixelFormat::parse(&pf.to_bytes()).unwrap();
        let mut v = Vec::new();
        pf.put(3, &mut v);
        assert_eq!(v, [0xFF, 0xFF]);
        let mut p8 = PixelFormat::NATIVE;
        p8.bits_per_pixel = 8;
        p8.depth = 8;
        (p8.red_max, p8.green_max, p8.blue_max) = (7, 7, 3);
        (p8.red_shift, p8.green_shift, p8.blue_shift) = (0, 3, 6);
        assert_eq!(PixelFormat::parse(&p8.to_bytes()).unwrap().value(3), 0xFF);
        p8.red_shift = 7;
        assert!(PixelFormat::parse(&p8.to_bytes()).is_err());
        p8.bits_per_pixel = 24;
        assert!(PixelFormat::parse(&p8.to_bytes()).is_err());
    }
}
