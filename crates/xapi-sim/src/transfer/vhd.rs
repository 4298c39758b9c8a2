//! Dynamic VHD (Microsoft VHD spec 1.0) for `format=vhd` raw-VDI transfers: a streaming writer (footer copy,
//! dynamic header, BAT, then for each allocated 2 MiB block its sector bitmap and data, then the footer) and a
//! forward-only reader that applies a dynamic VHD stream onto a VDI.

use std::io::{self, Read, Write};

use xapi_types::{Ref, XapiError};

use crate::vdi_data::{VdiStore, BLOCK};

/// VHD block size (2 MiB, what vhd-util and XO use).
pub(crate) const VHD_BLOCK: u64 = 2 << 20;
const SECTOR: u64 = 512;
/// Seconds between the Unix epoch and the VHD epoch (2000-01-01).
const VHD_EPOCH: u64 = 946_684_800;

fn checksum(b: &[u8]) -> u32 {
    !b.iter().fold(0u32, |a, x| a.wrapping_add(u32::from(*x)))
}

/// CHS geometry per the VHD specification.
fn geometry(size: u64) -> (u16, u8, u8) {
    let mut total = size / SECTOR;
    total = total.min(65535 * 16 * 255);
    let (spt, heads, cth);
    if total >= 65535 * 16 * 63 {
        spt = 255u64;
        heads = 16u64;
        cth = total / spt;
    } else {
        let mut s = 17u64;
        let mut c = total / s;
        let mut h = c.div_ceil(1024).max(4);
        if c >= h * 1024 || h > 16 {
            s = 31;
            h = 16;
            c = total / s;
        }
        if c >= h * 1024 {
            s = 63;
            h = 16;
            c = total / s;
        }
        spt = s;
        heads = h;
        cth = c;
    }
    ((cth / heads).min(65535) as u16, heads as u8, spt as u8)
}

fn footer(size: u64, uuid: &str, differencing: bool) -> [u8; 512] {
    let mut f = [0u8; 512];
    f[0..8].copy_from_slice(b"conectix");
    f[8..12].copy_from_slice(&2u32.to_be_bytes());
    f[12..16].copy_from_slice(&0x0001_0000u32.to_be_bytes());
    f[16..24].copy_from_slice(&SECTOR.to_be_bytes());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(VHD_EPOCH);
    f[24..28].copy_from_slice(&(now.saturating_sub(VHD_EPOCH) as u32).to_be_bytes());
    f[28..32].copy_from_slice(b"tap\0");
    f[32..36].copy_from_slice(&0x0001_0003u32.to_be_bytes());
    f[36..40].copy_from_slice(b"Lnux");
    f[40..48].copy_from_slice(&size.to_be_bytes());
    f[48..56].copy_from_slice(&size.to_be_bytes());
    let (c, h, s) = geometry(size);
    f[56..58].copy_from_slice(&c.to_be_bytes());
    f[58] = h;
    f[59] = s;
    let disk_type: u32 = if differencing { 4 } else { 3 };
    f[60..64].copy_from_slice(&disk_type.to_be_bytes());
    let id = uuid::Uuid::parse_str(uuid)
        .map(|u| *u.as_bytes())
        .unwrap_or([0; 16]);
    f[68..84].copy_from_slice(&id);
    let c = checksum(&f);
    f[64..68].copy_from_slice(&c.to_be_bytes());
    f
}

fn dyn_header(entries: u32, parent: Option<&str>) -> [u8; 1024] {
    let mut h = [0u8; 1024];
    h[0..8].copy_from_slice(b"cxsparse");
    h[8..16].copy_from_slice(&u64::MAX.to_be_bytes());
    h[16..24].copy_from_slice(&1536u64.to_be_bytes());
    h[24..28].copy_from_slice(&0x0001_0000u32.to_be_bytes());
    h[28..32].copy_from_slice(&entries.to_be_bytes());
    h[32..36].copy_from_slice(&(VHD_BLOCK as u32).to_be_bytes());
    if let Some(p) = parent {
        let id = uuid::Uuid::parse_str(p)
            .map(|u| *u.as_bytes())
            .unwrap_or([0; 16]);
        h[40..56].copy_from_slice(&id);
        // Parent name (UTF-16 BE): the parent VDI's uuid.
        for (k, unit) in p.encode_utf16().take(256).enumerate() {
            h[64 + 2 * k..66 + 2 * k].copy_from_slice(&unit.to_be_bytes());
        }
    }
    let c = checksum(&h);
    h[36..40].copy_from_slice(&c.to_be_bytes());
    h
}

/// Write the VDI as a dynamic VHD (only blocks holding data are allocated).
/// A VDI whose content an export is relative to (`base=`): only blocks that differ are written, in a
/// differencing VHD naming it as parent.
#[derive(Debug, Clone)]
pub(crate) struct Base {
    pub r: Ref,
    pub uuid: String,
    pub size: u64,
}

pub(crate) fn write(
    w: &mut impl Write,
    store: &VdiStore,
    vdi: &Ref,
    uuid: &str,
    size: u64,
    base: Option<&Base>,
) -> io::Result<()> {
    let per = VHD_BLOCK / BLOCK;
    let entries = size.div_ceil(VHD_BLOCK);
    let mut small = store.allocated(vdi, uuid, size);
    if let Some(b) = base {
        small.extend(
            store
                .allocated(&b.r, &b.uuid, b.size)
                .into_iter()
                .filter(|i| i * BLOCK < size),
        );
        small.sort_unstable();
        small.dedup();
        small.retain(|i| {
            store.read_block(vdi, uuid, *i, size) != {
                let mut x = store.read_block(&b.r, &b.uuid, *i, b.size);
                x.resize(store.read_block(vdi, uuid, *i, size).len(), 0);
                x
            }
        });
    }
    let mut used: Vec<u64> = small.into_iter().map(|i| i / per).collect();
    used.dedup();
    let bat_bytes = (entries * 4).div_ceil(SECTOR) * SECTOR;
    let bitmap = SECTOR; // 4096 sectors per block → 512 bytes
    let mut bat = vec![0xFFu8; bat_bytes as usize];
    let mut sector = (1536 + bat_bytes) / SECTOR;
    for b in &used {
        let i = *b as usize * 4;
        bat[i..i + 4].copy_from_slice(&(sector as u32).to_be_bytes());
        sector += (bitmap + VHD_BLOCK) / SECTOR;
    }
    let foot = footer(size, uuid, base.is_some());
    w.write_all(&foot)?;
    w.write_all(&dyn_header(entries as u32, base.map(|b| b.uuid.as_str())))?;
    w.write_all(&bat)?;
    let ones = vec![0xFFu8; bitmap as usize];
    for b in used {
        w.write_all(&ones)?;
        for k in 0..per {
            let idx = b * per + k;
            let mut data = store.read_block(vdi, uuid, idx, size);
            data.resize(BLOCK as usize, 0);
            w.write_all(&data)?;
        }
    }
    w.write_all(&foot)?;
    w.flush()
}

fn be32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

fn be64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

fn bad(msg: impl Into<String>) -> XapiError {
    XapiError::internal(format!("VHD: {}", msg.into()))
}

fn io_err(e: io::Error) -> XapiError {
    tracing::debug!("VHD stream: {e}");
    XapiError::new("VDI_IO_ERROR", ["Device I/O errors"])
}

/// A reader that counts its position and can skip forward.
struct Pos<R> {
    r: R,
    pos: u64,
}

impl<R: Read> Pos<R> {
    fn exact(&mut self, buf: &mut [u8]) -> Result<(), XapiError> {
        self.r.read_exact(buf).map_err(io_err)?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn skip_to(&mut self, at: u64) -> Result<(), XapiError> {
        if at < self.pos {
            return Err(bad("blocks out of order in a streamed VHD"));
        }
        let n = at - self.pos;
        let copied = io::copy(&mut (&mut self.r).take(n), &mut io::sink()).map_err(io_err)?;
        if copied != n {
            return Err(io_err(io::Error::from(io::ErrorKind::UnexpectedEof)));
        }
        self.pos = at;
        Ok(())
    }
}

/// Apply a dynamic VHD stream onto `vdi` (of `size` bytes); returns the VHD's virtual size.
pub(crate) fn read(
    r: impl Read,
    store: &VdiStore,
    vdi: &Ref,
    uuid: &str,
    size: u64,
) -> Result<u64, XapiError> {
    let mut p = Pos { r, pos: 0 };
    let mut foot = [0u8; 512];
    p.exact(&mut foot)?;
    if &foot[0..8] != b"conectix" {
        return Err(bad(
            "no footer copy at the start (only dynamic VHDs can be streamed)",
        ));
    }
    if !matches!(be32(&foot, 60), 3 | 4) {
        return Err(bad("only dynamic and differencing VHDs can be streamed"));
    }
    let vsize = be64(&foot, 48);
    if vsize > size {
        return Err(XapiError::new(
            "VDI_TOO_SMALL",
            [vdi.0.clone(), vsize.to_string()],
        ));
    }
    let hdr_at = be64(&foot, 16);
    p.skip_to(hdr_at)?;
    let mut hdr = [0u8; 1024];
    p.exact(&mut hdr)?;
    if &hdr[0..8] != b"cxsparse" {
        return Err(bad("bad dynamic header"));
    }
    let table = be64(&hdr, 16);
    let entries = u64::from(be32(&hdr, 28));
    let block = u64::from(be32(&hdr, 32));
    if block == 0
        || block % SECTOR != 0
        || block > (64 << 20)
        || entries > vsize.div_ceil(block) + 1
    {
        return Err(bad("bad block size or table"));
    }
    p.skip_to(table)?;
    let mut bat = vec![0u8; (entries * 4) as usize];
    p.exact(&mut bat)?;
    let mut blocks: Vec<(u64, u64)> = (0..entries)
        .filter_map(|i| {
            let s = be32(&bat, (i * 4) as usize);
            (s != u32::MAX).then_some((u64::from(s) * SECTOR, i))
        })
        .collect();
    blocks.sort_unstable();
    let bitmap = (block / SECTOR).div_ceil(8).div_ceil(SECTOR) * SECTOR;
    let mut data = vec![0u8; block as usize];
    let mut map = vec![0u8; bitmap as usize];
    let sectors = (block / SECTOR) as usize;
    for (off, i) in blocks {
        p.skip_to(off)?;
        p.exact(&mut map)?;
        p.exact(&mut data)?;
        // Only sectors marked present are written (the rest stays as it is: the parent's, or zeros).
        let mut k = 0;
        while k < sectors {
            if map[k / 8] & (0x80 >> (k % 8)) == 0 {
                k += 1;
                continue;
            }
            let start = k;
            while k < sectors && map[k / 8] & (0x80 >> (k % 8)) != 0 {
                k += 1;
            }
            let at = i * block + start as u64 * SECTOR;
            if at < vsize {
                let end = (i * block + k as u64 * SECTOR).min(vsize);
                let range = start * SECTOR as usize..start * SECTOR as usize + (end - at) as usize;
                store.write_at(vdi, uuid, size, at, &data[range])?;
            }
        }
    }
    Ok(vsize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_checksums() {
        let s = VdiStore::default();
        let a = Ref::from("OpaqueRef:a");
        let size = 7 * BLOCK + 512;
        s.create_empty(&a);
        s.write_at(&a, "u", size, 5 * BLOCK + 3, b"five").unwrap();
        s.write_at(&a, "u", size, size - 4, b"tail").unwrap();
        let mut out = Vec::new();
        write(
            &mut out,
            &s,
            &a,
            "00000000-0000-0000-0000-000000000001",
            size,
            None,
        )
        .unwrap();
        assert_eq!(&out[..8], b"conectix");
        assert_eq!(
            checksum(&{
                let mut f = out[..512].to_vec();
                f[64..68].fill(0);
                f
            }),
            be32(&out, 64)
        );
        // 2 allocated blocks (2 and 3) + headers.
        assert_eq!(
            out.len() as u64,
            512 + 1024 + 512 + 2 * (512 + VHD_BLOCK) + 512
        );
        let b = Ref::from("OpaqueRef:b");
        s.create_empty(&b);
        assert_eq!(read(out.as_slice(), &s, &b, "v", size).unwrap(), size);
        for i in 0..8 {
            assert_eq!(
                s.read_block(&a, "u", i, size),
                s.read_block(&b, "v", i, size)
            );
        }
        let small = Ref::from("OpaqueRef:c");
        s.create_empty(&small);
        assert_eq!(
            read(out.as_slice(), &s, &small, "w", BLOCK)
                .unwrap_err()
                .code,
            "VDI_TOO_SMALL"
        );
        assert_eq!(
            read(&out[..3000], &s, &b, "v", size).unwrap_err().code,
            "VDI_IO_ERROR"
        );
        assert_eq!(
            read(&[0u8; 600][..], &s, &b, "v", size).unwrap_err().code,
            "INTERNAL_ERROR"
        );
    }
}

#[cfg(test)]
mod differential {
    use super::*;

    #[test]
    fn only_changed_blocks_and_applied_on_a_copy_of_the_base() {
        let s = VdiStore::default();
        let (base, cur) = (Ref::from("OpaqueRef:base"), Ref::from("OpaqueRef:cur"));
        let size = 12 * BLOCK;
        s.create_empty(&base);
        s.write_at(&base, "b", size, 0, &[1u8; 4096]).unwrap();
        s.write_at(&base, "b", size, 9 * BLOCK, &[2u8; 10]).unwrap();
        s.derive(&base, "b", &cur);
        s.write_at(&cur, "c", size, 5 * BLOCK + 512, &[3u8; 512])
            .unwrap();
        s.write_at(&cur, "c", size, 9 * BLOCK, &[0u8; 10]).unwrap();
        let b = Base {
            r: base.clone(),
            uuid: "00000000-0000-0000-0000-0000000000bb".into(),
            size,
        };
        let mut out = Vec::new();
        write(
            &mut out,
            &s,
            &cur,
            "00000000-0000-0000-0000-0000000000cc",
            size,
            Some(&b),
        )
        .unwrap();
        assert_eq!(be32(&out, 60), 4, "differencing disk");
        // VHD blocks 2 (1 MiB block 5) and 4 (block 9): two blocks.
        assert_eq!(
            out.len() as u64,
            512 + 1024 + 512 + 2 * (512 + VHD_BLOCK) + 512
        );
        let restored = Ref::from("OpaqueRef:r");
        s.derive(&base, "b", &restored);
        read(out.as_slice(), &s, &restored, "r", size).unwrap();
        for i in 0..12 {
            assert_eq!(
                s.read_block(&restored, "r", i, size),
                s.read_block(&cur, "c", i, size),
                "block {i}"
            );
        }
    }
}

#[cfg(test)]
mod qemu_check {
    use super::*;

    /// `qemu-img` (when installed) reads what the writer produces with the same content.
    #[test]
    fn qemu_img_reads_it() {
        if std::process::Command::new("qemu-img")
            .arg("--version")
            .output()
            .is_err()
        {
            return;
        }
        let s = VdiStore::default();
        let a = Ref::from("OpaqueRef:a");
        let size = 9 * BLOCK;
        s.write_at(
            &a,
            "11111111-2222-3333-4444-555555555555",
            size,
            6 * BLOCK + 1,
            b"qemu",
        )
        .unwrap();
        let mut out = Vec::new();
        write(
            &mut out,
            &s,
            &a,
            "11111111-2222-3333-4444-555555555555",
            size,
            None,
        )
        .unwrap();
        let dir = std::env::temp_dir().join(format!("vhd-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (vhd, raw) = (dir.join("d.vhd"), dir.join("d.raw"));
        std::fs::write(&vhd, &out).unwrap();
        let st = std::process::Command::new("qemu-img")
            .args(["convert", "-O", "raw", "--image-opts"])
            .arg(format!(
                "driver=vpc,force_size_calc=current_size,file.filename={}",
                vhd.display()
            ))
            .arg(&raw)
            .status()
            .unwrap();
        assert!(st.success());
        let back = std::fs::read(&raw).unwrap();
        assert_eq!(back.len() as u64, size);
        for i in 0..9u64 {
            let want = s.read_block(&a, "11111111-2222-3333-4444-555555555555", i, size);
            assert_eq!(
                &back[(i * BLOCK) as usize..((i + 1) * BLOCK) as usize],
                want.as_slice(),
                "block {i}"
            );
        }
        // And the reader takes what qemu-img writes.
        let vhd2 = dir.join("q.vhd");
        let st = std::process::Command::new("qemu-img")
            .args([
                "convert",
                "-f",
                "raw",
                "-O",
                "vpc",
                "-o",
                "subformat=dynamic,force_size=on",
            ])
            .arg(&raw)
            .arg(&vhd2)
            .status()
            .unwrap();
        assert!(st.success());
        let b = Ref::from("OpaqueRef:b");
        s.create_empty(&b);
        let q = std::fs::read(&vhd2).unwrap();
        assert_eq!(read(q.as_slice(), &s, &b, "b", size).unwrap(), size);
        for i in 0..9u64 {
            assert_eq!(
                s.read_block(&b, "b", i, size),
                s.read_block(&a, "11111111-2222-3333-4444-555555555555", i, size)
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
