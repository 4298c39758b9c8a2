//! The text model of a simulated VM console: a title row, a boot log and typed text on an 80x25 character grid
//! (640x400 pixels with the 8x16 font), key handling, scrolling, and rendering of pixel regions as palette
//! indices.

use std::collections::VecDeque;

use super::font;

/// Columns of the text grid.
pub const COLS: usize = 80;
/// Rows of the text grid (row 0 is the title bar).
pub const ROWS: usize = 25;
/// Framebuffer width in pixels.
pub const WIDTH: u16 = (COLS * font::WIDTH) as u16;
/// Framebuffer height in pixels.
pub const HEIGHT: u16 = (ROWS * font::HEIGHT) as u16;

/// Completed lines kept for scrolling back into view after a BackSpace-free session (older ones are dropped).
const SCROLLBACK: usize = 200;
/// Longest logical line (further typed characters are ignored).
const MAX_LINE: usize = 4096;

/// X11 keysyms handled by the console.
pub mod keysym {
    pub const BACKSPACE: u32 = 0xFF08;
    pub const TAB: u32 = 0xFF09;
    pub const RETURN: u32 = 0xFF0D;
    pub const KP_ENTER: u32 = 0xFF8D;
}

/// The palette: every pixel is one of these colours (index into this table).
pub const PALETTE: [(u8, u8, u8); 4] = [
    (0x00, 0x00, 0x00), // 0 background
    (0xAA, 0xAA, 0xAA), // 1 text
    (0x00, 0x00, 0xAA), // 2 title background
    (0xFF, 0xFF, 0xFF), // 3 title text
];

/// How a cell is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attr {
    Normal,
    Title,
    Cursor,
}

impl Attr {
    /// (foreground, background) palette indices.
    fn colours(self) -> (u8, u8) {
        match self {
            Attr::Normal => (1, 0),
            Attr::Title => (3, 2),
            Attr::Cursor => (0, 1),
        }
    }
}

/// A snapshot of what is on screen: one (character, attribute) per cell, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grid {
    pub cells: Vec<(u8, Attr)>,
    /// Absolute index of the screen row shown on text row 1 (grows as the text scrolls up; lets a viewer move
    /// pixels with CopyRect instead of redrawing).
    pub top: u64,
}

impl Grid {
    /// The cell at column `c`, row `r`.
    pub fn cell(&self, c: usize, r: usize) -> (u8, Attr) {
        self.cells[r * COLS + c]
    }

    /// The text of every row (trailing spaces trimmed).
    pub fn lines(&self) -> Vec<String> {
        (0..ROWS)
            .map(|r| {
                let s: String = (0..COLS).map(|c| self.cell(c, r).0 as char).collect();
                s.trim_end().to_owned()
            })
            .collect()
    }

    /// Draw the pixel rectangle (x, y, w, h) as palette indices, row-major.
    pub fn render(&self, x: u16, y: u16, w: u16, h: u16) -> Vec<u8> {
        let mut out = Vec::with_capacity(w as usize * h as usize);
        for py in y as usize..(y as usize + h as usize) {
            let (r, gy) = (py / font::HEIGHT, py % font::HEIGHT);
            for px in x as usize..(x as usize + w as usize) {
                let (c, gx) = (px / font::WIDTH, px % font::WIDTH);
                let (ch, attr) = self.cell(c, r);
                let (fg, bg) = attr.colours();
                let on = font::glyph(ch)[gy] & (0x80 >> gx) != 0;
                out.push(if on { fg } else { bg });
            }
        }
        out
    }

    /// The smallest pixel rectangle (x, y, w, h) covering every cell that differs from `old`.
    pub fn diff(&self, old: &Grid) -> Option<(u16, u16, u16, u16)> {
        let (mut c0, mut r0, mut c1, mut r1) = (usize::MAX, usize::MAX, 0, 0);
        for r in 0..ROWS {
            for c in 0..COLS {
                if self.cell(c, r) != old.cell(c, r) {
                    c0 = c0.min(c);
                    r0 = r0.min(r);
                    c1 = c1.max(c);
                    r1 = r1.max(r);
                }
            }
        }
        (c0 != usize::MAX).then(|| {
            (
                (c0 * font::WIDTH) as u16,
                (r0 * font::HEIGHT) as u16,
                ((c1 - c0 + 1) * font::WIDTH) as u16,
                ((r1 - r0 + 1) * font::HEIGHT) as u16,
            )
        })
    }
}

/// The console's text: title, completed lines and the line being typed.
#[derive(Debug, Clone)]
pub struct ConsoleText {
    title: String,
    lines: VecDeque<String>,
    current: String,
    /// Screen rows of the lines dropped from the scrollback so far.
    dropped_rows: u64,
}

impl ConsoleText {
    /// A console titled `title` whose log holds `log` and whose current line starts with `prompt`.
    pub fn new(title: &str, log: &[String], prompt: &str) -> Self {
        let mut t = ConsoleText {
            title: printable(title),
            lines: VecDeque::new(),
            current: String::new(),
            dropped_rows: 0,
        };
        for l in log {
            t.push_line(printable(l));
        }
        t.current = printable(prompt);
        t
    }

    fn push_line(&mut self, l: String) {
        self.lines.push_back(l);
        while self.lines.len() > SCROLLBACK {
            if let Some(old) = self.lines.pop_front() {
                self.dropped_rows += old.len().div_ceil(COLS).max(1) as u64;
            }
        }
    }

    /// Apply a key press (`down`) or release; true when the text changed.
    pub fn key(&mut self, down: bool, sym: u32) -> bool {
        if !down {
            return false;
        }
        match sym {
            0x20..=0x7E => {
                if self.current.len() >= MAX_LINE {
                    return false;
                }
                self.current.push(sym as u8 as char);
                true
            }
            keysym::TAB => {
                if self.current.len() >= MAX_LINE {
                    return false;
                }
                let pad = 8 - self.current.len() % 8;
                self.current.extend(std::iter::repeat_n(' ', pad));
                true
            }
            keysym::RETURN | keysym::KP_ENTER => {
                let done = std::mem::take(&mut self.current);
                self.push_line(done);
                true
            }
            keysym::BACKSPACE => self.current.pop().is_some(),
            _ => false,
        }
    }

    /// Lay the text out on the grid: title bar on row 0, then the last rows of the (wrapped) log and current line,
    /// with the cursor after the current line.
    pub fn grid(&self) -> Grid {
        let mut cells = vec![(b' ', Attr::Normal); COLS * ROWS];
        for (c, b) in self.title.bytes().take(COLS).enumerate() {
            cells[c] = (b, Attr::Title);
        }
        for cell in cells.iter_mut().take(COLS).skip(self.title.len()) {
            *cell = (b' ', Attr::Title);
        }
        let mut rows: Vec<&[u8]> = Vec::new();
        for l in &self.lines {
            wrap(l.as_bytes(), &mut rows);
        }
        let cur_start = rows.len();
        wrap(self.current.as_bytes(), &mut rows);
        // The cursor sits after the last character; a full last row pushes it onto a new row.
        let cur_len = self.current.len();
        let (cur_row, cur_col) = if cur_len > 0 && cur_len % COLS == 0 {
            rows.push(&[]);
            (rows.len() - 1, 0)
        } else {
            (rows.len() - 1, cur_len % COLS)
        };
        debug_assert!(cur_row >= cur_start);
        let visible = ROWS - 1;
        let first = rows.len().saturating_sub(visible);
        for (i, row) in rows[first..].iter().enumerate() {
            let base = (i + 1) * COLS;
            for (c, b) in row.iter().enumerate() {
                cells[base + c] = (*b, Attr::Normal);
            }
        }
        let screen_row = cur_row - first + 1;
        let idx = screen_row * COLS + cur_col;
        cells[idx].1 = Attr::Cursor;
        Grid {
            cells,
            top: self.dropped_rows + first as u64,
        }
    }
}

/// Split a logical line into screen rows of at most [`COLS`] characters (an empty line is one empty row).
fn wrap<'a>(line: &'a [u8], rows: &mut Vec<&'a [u8]>) {
    if line.is_empty() {
        rows.push(line);
        return;
    }
    rows.extend(line.chunks(COLS));
}

/// Keep printable ASCII only (others become '?').
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if (' '..='~').contains(&c) { c } else { '?' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text() -> ConsoleText {
        ConsoleText::new("vm1", &["boot".to_owned()], "login: ")
    }

    #[test]
    fn typing_return_and_backspace() {
        let mut t = text();
        for k in "root".bytes() {
            assert!(t.key(true, k as u32));
        }
        assert!(!t.key(false, b'x' as u32));
        assert!(t.key(true, keysym::BACKSPACE));
        let g = t.grid();
        assert_eq!(g.lines()[0], "vm1");
        assert_eq!(g.lines()[1], "boot");
        assert_eq!(g.lines()[2], "login: roo");
        assert_eq!(g.cell(10, 2).1, Attr::Cursor);
        assert!(t.key(true, keysym::RETURN));
        assert!(t.key(true, b'$' as u32));
        assert_eq!(t.grid().lines()[3], "$");
        assert!(!t.key(true, 0xFFE1)); // Shift_L
    }

    #[test]
    fn scrolls_and_wraps() {
        let mut t = text();
        for i in 0..40 {
            for k in format!("line {i}").bytes() {
                t.key(true, k as u32);
            }
            t.key(true, keysym::RETURN);
        }
        let lines = t.grid().lines();
        assert_eq!(lines[ROWS - 2], "line 39");
        assert_eq!(lines[1], "line 17");
        assert_eq!(t.grid().top, 18);
        for _ in 0..(COLS + 5) {
            t.key(true, b'x' as u32);
        }
        let lines = t.grid().lines();
        assert_eq!(lines[ROWS - 2].len(), COLS);
        assert_eq!(lines[ROWS - 1], "xxxxx");
        let old = t.grid();
        t.key(true, b'y' as u32);
        let (x, y, w, h) = t.grid().diff(&old).unwrap();
        assert_eq!((x, y, h), (5 * 8, 24 * 16, 16));
        assert_eq!(w, 16);
        assert_eq!(t.grid().diff(&t.grid()), None);
        // Past the scrollback bound, `top` keeps counting.
        for _ in 0..(SCROLLBACK + 10) {
            t.key(true, keysym::RETURN);
        }
        let top = t.grid().top;
        t.key(true, keysym::RETURN);
        assert_eq!(t.grid().top, top + 1);
    }

    #[test]
    fn render_draws_glyphs() {
        let g = text().grid();
        let px = g.render(0, 0, WIDTH, HEIGHT);
        assert_eq!(px.len(), WIDTH as usize * HEIGHT as usize);
        assert!(px.contains(&3) && px.contains(&2) && px.contains(&1) && px.contains(&0));
    }
}
