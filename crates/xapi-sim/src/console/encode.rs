//! Framebuffer rectangle encodings: Raw (0) and Hextile (5), from palette-index pixels (CopyRect (1) needs no
//! pixels and is written by the RFB session).

use super::pixel::PixelFormat;

/// RFB encoding numbers.
pub const RAW: i32 = 0;
pub const COPY_RECT: i32 = 1;
pub const HEXTILE: i32 = 5;

const HT_RAW: u8 = 1;
const HT_BACKGROUND: u8 = 2;
const HT_FOREGROUND: u8 = 4;
const HT_ANY_SUBRECTS: u8 = 8;

/// Append a Raw rectangle body (`px` holds w*h palette indices).
pub fn raw(pf: PixelFormat, px: &[u8], out: &mut Vec<u8>) {
    let table = pf.table();
    out.reserve(px.len() * pf.bytes());
    for &p in px {
        out.extend_from_slice(&table[usize::from(p)]);
    }
}

/// Append a Hextile rectangle body for a `w`x`h` rectangle of palette indices.
///
/// Each 16x16 tile is a solid background, a background plus foreground subrects (two colours), or raw pixels
/// (more colours, or when subrects would not be smaller). Background and foreground are specified in every tile
/// that uses them, so no state carries over between tiles.
pub fn hextile(pf: PixelFormat, px: &[u8], w: u16, h: u16, out: &mut Vec<u8>) {
    let table = pf.table();
    let bpp = pf.bytes();
    let (w, h) = (usize::from(w), usize::from(h));
    let mut tile = Vec::with_capacity(256);
    for ty in (0..h).step_by(16) {
        let th = (h - ty).min(16);
        for tx in (0..w).step_by(16) {
            let tw = (w - tx).min(16);
            tile.clear();
            for y in ty..ty + th {
                tile.extend_from_slice(&px[y * w + tx..y * w + tx + tw]);
            }
            encode_tile(&tile, tw, th, &table, bpp, out);
        }
    }
}

fn encode_tile(
    tile: &[u8],
    tw: usize,
    th: usize,
    table: &[Vec<u8>],
    bpp: usize,
    out: &mut Vec<u8>,
) {
    let mut counts = [0usize; 256];
    for &p in tile {
        counts[usize::from(p)] += 1;
    }
    let colours: Vec<usize> = (0..256).filter(|&i| counts[i] > 0).collect();
    let raw_tile = |out: &mut Vec<u8>| {
        out.push(HT_RAW);
        for &p in tile {
            out.extend_from_slice(&table[usize::from(p)]);
        }
    };
    match colours.len() {
        1 => {
            out.push(HT_BACKGROUND);
            out.extend_from_slice(&table[colours[0]]);
        }
        2 => {
            let (bg, fg) = if counts[colours[0]] >= counts[colours[1]] {
                (colours[0] as u8, colours[1] as u8)
            } else {
                (colours[1] as u8, colours[0] as u8)
            };
            let rects = subrects(tile, tw, th, fg);
            let size = 2 + 2 * bpp + 2 * rects.len();
            if rects.len() > 255 || size > 1 + tile.len() * bpp {
                raw_tile(out);
                return;
            }
            out.push(HT_BACKGROUND | HT_FOREGROUND | HT_ANY_SUBRECTS);
            out.extend_from_slice(&table[usize::from(bg)]);
            out.extend_from_slice(&table[usize::from(fg)]);
            out.push(rects.len() as u8);
            for (x, y, w, h) in rects {
                out.push(((x as u8) << 4) | y as u8);
                out.push((((w - 1) as u8) << 4) | (h - 1) as u8);
            }
        }
        _ => raw_tile(out),
    }
}

/// Rectangles (x, y, w, h) covering exactly the `fg` pixels: horizontal runs, merged downwards when the run
/// below has the same extent.
fn subrects(tile: &[u8], tw: usize, th: usize, fg: u8) -> Vec<(usize, usize, usize, usize)> {
    let mut done: Vec<(usize, usize, usize, usize)> = Vec::new();
    let mut open: Vec<(usize, usize, usize, usize)> = Vec::new();
    for y in 0..th {
        let row = &tile[y * tw..(y + 1) * tw];
        let mut runs = Vec::new();
        let mut x = 0;
        while x < tw {
            if row[x] == fg {
                let start = x;
                while x < tw && row[x] == fg {
                    x += 1;
                }
                runs.push((start, x - start));
            } else {
                x += 1;
            }
        }
        let mut next_open = Vec::new();
        for (rx, rw) in runs {
            if let Some(i) = open.iter().position(|&(ox, _, ow, _)| ox == rx && ow == rw) {
                let mut r = open.swap_remove(i);
                r.3 += 1;
                next_open.push(r);
            } else {
                next_open.push((rx, y, rw, 1));
            }
        }
        done.append(&mut open);
        open = next_open;
    }
    done.append(&mut open);
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Hextile decoder over palette indices (native 32-bpp format), for checking the encoder.
    fn decode_hextile(data: &[u8], w: usize, h: usize) -> Vec<u32> {
        let mut px = vec![0u32; w * h];
        let mut i = 0;
        let rd = |i: &mut usize| {
            let v = u32::from_le_bytes(data[*i..*i + 4].try_into().unwrap());
            *i += 4;
            v
        };
        for ty in (0..h).step_by(16) {
            let th = (h - ty).min(16);
            for tx in (0..w).step_by(16) {
                let tw = (w - tx).min(16);
                let flags = data[i];
                i += 1;
                if flags & HT_RAW != 0 {
                    for y in 0..th {
                        for x in 0..tw {
                            px[(ty + y) * w + tx + x] = rd(&mut i);
                        }
                    }
                    continue;
                }
                let bg = rd(&mut i);
                let fg = if flags & HT_FOREGROUND != 0 {
                    rd(&mut i)
                } else {
                    0
                };
                for y in 0..th {
                    for x in 0..tw {
                        px[(ty + y) * w + tx + x] = bg;
                    }
                }
                if flags & HT_ANY_SUBRECTS != 0 {
                    let n = data[i];
                    i += 1;
                    for _ in 0..n {
                        let (xy, wh) = (data[i], data[i + 1]);
                        i += 2;
                        let (sx, sy) = (usize::from(xy >> 4), usize::from(xy & 15));
                        let (sw, sh) = (usize::from(wh >> 4) + 1, usize::from(wh & 15) + 1);
                        for y in sy..sy + sh {
                            for x in sx..sx + sw {
                                px[(ty + y) * w + tx + x] = fg;
                            }
                        }
                    }
                }
            }
        }
        assert_eq!(i, data.len());
        px
    }

    #[test]
    fn hextile_matches_raw() {
        use super::super::screen::{ConsoleText, HEIGHT, WIDTH};
        let g = ConsoleText::new("title", &["hello world".into()], "$ ").grid();
        for (x, y, w, h) in [(0, 0, WIDTH, HEIGHT), (3, 5, 37, 21), (600, 390, 40, 10)] {
            let px = g.render(x, y, w, h);
            let pf = PixelFormat::NATIVE;
            let mut ht = Vec::new();
            hextile(pf, &px, w, h, &mut ht);
            let expect: Vec<u32> = px.iter().map(|&p| pf.value(p)).collect();
            assert_eq!(decode_hextile(&ht, w as usize, h as usize), expect);
            let mut r = Vec::new();
            raw(pf, &px, &mut r);
            assert_eq!(r.len(), px.len() * 4);
            if w == WIDTH {
                assert!(
                    ht.len() < r.len() / 4,
                    "hextile {} raw {}",
                    ht.len(),
                    r.len()
                );
            }
        }
        // Three colours in a tile → raw tile.
        let px = [0u8, 1, 2, 3];
        let mut ht = Vec::new();
        hextile(PixelFormat::NATIVE, &px, 2, 2, &mut ht);
        assert_eq!(ht[0], HT_RAW);
        assert_eq!(decode_hextile(&ht, 2, 2).len(), 4);
    }
}
