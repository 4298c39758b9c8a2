//! VDI content store: sparse disks made of 1 MiB blocks kept in memory under a global byte cap.
//!
//! A VDI with no entry here reads as its *generated* image: a small deterministic, non-zero content derived from
//! its uuid (a boot sector and a few data blocks), so a pool of 10,000 seeded VMs costs nothing until a disk is
//! written. VDIs made by the ops (`VDI.create`, provisioning) start explicitly empty (all zeros). Clones, copies
//! and snapshots share blocks (copy on write, reference-counted); only blocks nobody else holds count against
//! the cap when they are dropped. Writing past the cap fails with `SR_BACKEND_FAILURE_44` (insufficient space).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;
use xapi_types::{Ref, XapiError};

/// Size of one content block (and of one XVA chunk).
pub const BLOCK: u64 = 1 << 20;

/// Default total cap of stored (written) bytes: 1 GiB.
pub const DEFAULT_CAP: u64 = 1 << 30;

/// Indices of the generated blocks of a seeded disk (those inside its size).
const GENERATED: [u64; 4] = [0, 1, 2, 16];

type Block = Arc<Vec<u8>>;

/// The content of one VDI.
#[derive(Clone)]
enum Disk {
    /// The generated image of the VDI whose uuid is held (a clone of a seeded disk keeps its origin's image), for
    /// the disk size it was generated at (pinned by a resize; `None`: the current size).
    Generated(String, Option<u64>),
    /// Explicit sparse blocks (absent = zeros).
    Blocks(BTreeMap<u64, Block>),
}

struct Inner {
    disks: HashMap<Ref, Disk>,
    used: u64,
    cap: u64,
}

/// The content of every VDI of a pool. Cheap to share (`Arc`); its lock is never held while the DB is locked by
/// its own methods' callers for long (block copies only).
pub struct VdiStore {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for VdiStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let g = self.inner.lock();
        f.debug_struct("VdiStore")
            .field("disks", &g.disks.len())
            .field("used", &g.used)
            .field("cap", &g.cap)
            .finish()
    }
}

impl Default for VdiStore {
    fn default() -> Self {
        VdiStore {
            inner: Mutex::new(Inner {
                disks: HashMap::new(),
                used: 0,
                cap: DEFAULT_CAP,
            }),
        }
    }
}

/// `SR_BACKEND_FAILURE_44` as SMAPI reports a full SR.
pub fn out_of_space() -> XapiError {
    XapiError::new(
        "SR_BACKEND_FAILURE_44",
        ["", "There is insufficient space", ""],
    )
}

fn splitmix(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn seed_of(uuid: &str, idx: u64) -> u64 {
    // FNV-1a of the uuid, mixed with the block index.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in uuid.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^ idx.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Length of block `idx` of a disk of `size` bytes (0 past the end).
fn block_len(idx: u64, size: u64) -> usize {
    let start = idx.saturating_mul(BLOCK);
    if start >= size {
        0
    } else {
        (size - start).min(BLOCK) as usize
    }
}

/// Block `idx` of the generated image of `uuid` (for a disk of `size` bytes), if it is one of the written ones.
pub fn generated_block(uuid: &str, idx: u64, size: u64) -> Option<Vec<u8>> {
    let len = block_len(idx, size);
    if len == 0 || !GENERATED.contains(&idx) {
        return None;
    }
    let mut out = vec![0u8; len];
    let mut st = seed_of(uuid, idx);
    if idx == 0 {
        // A boot sector: a jump, a banner naming the disk, one bootable partition, the 0x55AA signature.
        let banner = format!("XAPI-SIM disk {uuid}\r\n");
        out[0] = 0xEB;
        out[1] = 0x3C;
        out[2] = 0x90;
        let n = banner.len().min(len.saturating_sub(3)).min(400);
        out[3..3 + n].copy_from_slice(&banner.as_bytes()[..n]);
        if len >= 512 {
            let sectors = (size / 512).saturating_sub(2048).min(u64::from(u32::MAX)) as u32;
            let p = 446;
            out[p] = 0x80;
            out[p + 4] = 0x83;
            out[p + 8..p + 12].copy_from_slice(&2048u32.to_le_bytes());
            out[p + 12..p + 16].copy_from_slice(&sectors.to_le_bytes());
            out[510] = 0x55;
            out[511] = 0xAA;
        }
        // Some pseudo-random "file system" bytes after the first sector.
        for chunk in out[512.min(len)..].chunks_mut(8).take(4096) {
            let v = splitmix(&mut st).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    } else {
        // Half of the block pseudo-random, the rest zeros (a partly filled block).
        let half = len / 2;
        for chunk in out[..half].chunks_mut(8) {
            let v = splitmix(&mut st).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
    Some(out)
}

impl Inner {
    /// Block `idx` of `vdi` (already explicit blocks) becomes `buf` (a hole when all zeros), within the cap.
    fn set_block(&mut self, vdi: &Ref, idx: u64, buf: Block) -> Result<(), XapiError> {
        let zero = buf.iter().all(|b| *b == 0);
        let add = if zero { 0 } else { buf.len() as u64 };
        let freed = match self.disks.get(vdi) {
            // a block only this disk holds is freed by the write
            Some(Disk::Blocks(m)) => m
                .get(&idx)
                .filter(|b| Arc::strong_count(b) == 1)
                .map_or(0, |b| b.len() as u64),
            _ => 0,
        };
        if self.used.saturating_sub(freed).saturating_add(add) > self.cap {
            return Err(out_of_space());
        }
        let old = match self.disks.get_mut(vdi) {
            Some(Disk::Blocks(m)) => {
                if zero {
                    m.remove(&idx)
                } else {
                    m.insert(idx, buf)
                }
            }
            _ => None,
        };
        self.used += add;
        if let Some(b) = old {
            self.release(b);
        }
        Ok(())
    }

    /// Take ownership accounting for a block being dropped from a map.
    fn release(&mut self, b: Block) {
        if Arc::strong_count(&b) == 1 {
            self.used = self.used.saturating_sub(b.len() as u64);
        }
    }

    /// Origin and generation size of a disk still showing its generated image.
    fn generation(&self, vdi: &Ref, uuid: &str, size: u64) -> Option<(String, u64)> {
        match self.disks.get(vdi) {
            Some(Disk::Blocks(_)) => None,
            Some(Disk::Generated(o, pinned)) => Some((o.clone(), pinned.unwrap_or(size))),
            None => Some((uuid.to_owned(), size)),
        }
    }

    /// The explicit block map of `vdi`, materialising its generated image first.
    fn blocks_mut(&mut self, vdi: &Ref, uuid: &str, size: u64) -> Result<(), XapiError> {
        let Some((origin, gsize)) = self.generation(vdi, uuid, size) else {
            return Ok(());
        };
        let mut map = BTreeMap::new();
        let mut add = 0u64;
        for idx in GENERATED {
            let len = block_len(idx, size);
            if let Some(mut b) = generated_block(&origin, idx, gsize).filter(|_| len > 0) {
                b.resize(len, 0);
                add += b.len() as u64;
                map.insert(idx, Arc::new(b));
            }
        }
        if self.used.saturating_add(add) > self.cap {
            return Err(out_of_space());
        }
        self.used += add;
        self.disks.insert(vdi.clone(), Disk::Blocks(map));
        Ok(())
    }
}

impl VdiStore {
    /// Set the cap on stored bytes.
    pub fn set_cap(&self, cap: u64) {
        self.inner.lock().cap = cap;
    }

    /// Bytes stored now.
    pub fn used(&self) -> u64 {
        self.inner.lock().used
    }

    /// A new, all-zero VDI.
    pub fn create_empty(&self, vdi: &Ref) {
        let mut g = self.inner.lock();
        if let Some(Disk::Blocks(old)) = g.disks.insert(vdi.clone(), Disk::Blocks(BTreeMap::new()))
        {
            for b in old.into_values() {
                g.release(b);
            }
        }
    }

    /// `dst` gets the content of `src` (blocks shared; a generated image stays generated).
    pub fn derive(&self, src: &Ref, src_uuid: &str, dst: &Ref) {
        let mut g = self.inner.lock();
        let d = g
            .disks
            .get(src)
            .cloned()
            .unwrap_or_else(|| Disk::Generated(src_uuid.to_owned(), None));
        if let Some(Disk::Blocks(old)) = g.disks.insert(dst.clone(), d) {
            for b in old.into_values() {
                g.release(b);
            }
        }
    }

    /// Forget the content of a destroyed VDI.
    pub fn remove(&self, vdi: &Ref) {
        let mut g = self.inner.lock();
        if let Some(Disk::Blocks(old)) = g.disks.remove(vdi) {
            for b in old.into_values() {
                g.release(b);
            }
        }
    }

    /// Drop blocks past a new (smaller) size; the partial last block is cut.
    pub fn truncate(
        &self,
        vdi: &Ref,
        uuid: &str,
        old_size: u64,
        new_size: u64,
    ) -> Result<(), XapiError> {
        if new_size >= old_size {
            return Ok(());
        }
        let mut g = self.inner.lock();
        g.blocks_mut(vdi, uuid, old_size)?;
        let Some(Disk::Blocks(map)) = g.disks.get_mut(vdi) else {
            return Ok(());
        };
        let keep_blocks = new_size.div_ceil(BLOCK);
        let mut dropped: Vec<Block> = map.split_off(&keep_blocks).into_values().collect();
        let last_len = block_len(keep_blocks.saturating_sub(1), new_size);
        if keep_blocks > 0 {
            if let Some(b) = map.get_mut(&(keep_blocks - 1)) {
                if b.len() > last_len {
                    let cut = Arc::new(b[..last_len].to_vec());
                    dropped.push(std::mem::replace(b, cut));
                    g.used += last_len as u64;
                }
            }
        }
        for b in dropped {
            g.release(b);
        }
        Ok(())
    }

    /// Record the size a seeded disk's generated image belongs to, before a resize changes the disk's size.
    pub fn pin(&self, vdi: &Ref, uuid: &str, size: u64) {
        let mut g = self.inner.lock();
        match g.disks.get_mut(vdi) {
            Some(Disk::Blocks(_)) => {}
            Some(Disk::Generated(_, pinned)) => {
                pinned.get_or_insert(size);
            }
            None => {
                g.disks
                    .insert(vdi.clone(), Disk::Generated(uuid.to_owned(), Some(size)));
            }
        }
    }

    /// Indices of the blocks that may hold non-zero data, ascending.
    pub fn allocated(&self, vdi: &Ref, uuid: &str, size: u64) -> Vec<u64> {
        let g = self.inner.lock();
        if let Some(Disk::Blocks(m)) = g.disks.get(vdi) {
            return m
                .keys()
                .copied()
                .filter(|i| block_len(*i, size) > 0)
                .collect();
        }
        let (_, gsize) = g.generation(vdi, uuid, size).unwrap_or_default();
        GENERATED
            .iter()
            .copied()
            .filter(|i| block_len(*i, gsize) > 0 && block_len(*i, size) > 0)
            .collect()
    }

    /// Block `idx` (exactly `min(BLOCK, size - idx*BLOCK)` bytes; zeros when unallocated).
    pub fn read_block(&self, vdi: &Ref, uuid: &str, idx: u64, size: u64) -> Vec<u8> {
        let len = block_len(idx, size);
        let stored = {
            let g = self.inner.lock();
            match g.disks.get(vdi) {
                Some(Disk::Blocks(m)) => Ok(m.get(&idx).cloned()),
                _ => Err(g.generation(vdi, uuid, size).unwrap_or_default()),
            }
        };
        let mut out = match stored {
            Ok(Some(b)) => b.as_ref().clone(),
            Ok(None) => Vec::new(),
            Err((origin, gsize)) => generated_block(&origin, idx, gsize).unwrap_or_default(),
        };
        out.resize(len, 0);
        out
    }

    /// `VDI.copy` into an existing VDI: the first `src.2` bytes of `dst` become those of `src`.
    pub fn copy_into(
        &self,
        src: (&Ref, &str, u64),
        dst: (&Ref, &str, u64),
    ) -> Result<(), XapiError> {
        let (sref, suuid, ssize) = src;
        let (dref, duuid, dsize) = dst;
        let mut idxs = self.allocated(sref, suuid, ssize);
        idxs.extend(
            self.allocated(dref, duuid, dsize)
                .into_iter()
                .filter(|i| i * BLOCK < ssize),
        );
        idxs.sort_unstable();
        idxs.dedup();
        for idx in idxs {
            let b = self.read_block(sref, suuid, idx, ssize);
            self.write_at(dref, duuid, dsize, idx * BLOCK, &b)?;
        }
        Ok(())
    }

    /// Write `data` at byte `offset` (clipped to `size`). All-zero blocks become holes.
    pub fn write_at(
        &self,
        vdi: &Ref,
        uuid: &str,
        size: u64,
        offset: u64,
        data: &[u8],
    ) -> Result<(), XapiError> {
        let mut g = self.inner.lock();
        g.blocks_mut(vdi, uuid, size)?;
        let mut pos = offset;
        let mut rest = data;
        while !rest.is_empty() && pos < size {
            let idx = pos / BLOCK;
            let within = (pos % BLOCK) as usize;
            let len = block_len(idx, size);
            let n = rest.len().min(len - within);
            let buf = if within == 0 && n == len {
                // the whole block: no need for what it held
                rest[..n].to_vec()
            } else {
                let mut buf = match g.disks.get(vdi) {
                    Some(Disk::Blocks(m)) => m.get(&idx).map(|b| b.as_ref().clone()),
                    _ => None,
                }
                .unwrap_or_default();
                buf.resize(len, 0);
                buf[within..within + n].copy_from_slice(&rest[..n]);
                buf
            };
            g.set_block(vdi, idx, Arc::new(buf))?;
            pos += n as u64;
            rest = &rest[n..];
        }
        Ok(())
    }

    /// Make `data` block `idx` of `vdi` (a disk of `size` bytes) as it is, without copying it: the XVA import's
    /// chunks. When `data` is not the whole block it is written with [`VdiStore::write_at`].
    pub fn write_block(
        &self,
        vdi: &Ref,
        uuid: &str,
        size: u64,
        idx: u64,
        data: Vec<u8>,
    ) -> Result<(), XapiError> {
        if data.len() != block_len(idx, size) {
            return self.write_at(vdi, uuid, size, idx.saturating_mul(BLOCK), &data);
        }
        let mut g = self.inner.lock();
        g.blocks_mut(vdi, uuid, size)?;
        g.set_block(vdi, idx, Arc::new(data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_then_written_then_cloned() {
        let s = VdiStore::default();
        let a = Ref::from("OpaqueRef:a");
        let size = 20 * BLOCK;
        assert_eq!(s.allocated(&a, "u-a", size), vec![0, 1, 2, 16]);
        let b0 = s.read_block(&a, "u-a", 0, size);
        assert_eq!(&b0[510..512], &[0x55, 0xAA]);
        assert_eq!(s.used(), 0);
        s.write_at(&a, "u-a", size, 5 * BLOCK + 10, b"hello")
            .unwrap();
        assert_eq!(s.allocated(&a, "u-a", size), vec![0, 1, 2, 5, 16]);
        let used = s.used();
        let c = Ref::from("OpaqueRef:c");
        s.derive(&a, "u-a", &c);
        assert_eq!(s.used(), used, "clones share blocks");
        assert_eq!(&s.read_block(&c, "u-c", 5, size)[10..15], b"hello");
        s.write_at(&a, "u-a", size, 5 * BLOCK, &vec![0u8; BLOCK as usize])
            .unwrap();
        assert_eq!(s.used(), used, "block still held by the clone");
        s.remove(&c);
        assert_eq!(s.used(), used - BLOCK);
        s.truncate(&a, "u-a", size, BLOCK + 100).unwrap();
        assert_eq!(s.allocated(&a, "u-a", BLOCK + 100), vec![0, 1]);
        assert_eq!(s.read_block(&a, "u-a", 1, BLOCK + 100).len(), 100);
    }

    #[test]
    fn resize_keeps_the_generated_image() {
        let s = VdiStore::default();
        let a = Ref::from("OpaqueRef:a");
        let small = 10 * BLOCK;
        let before: Vec<Vec<u8>> = (0..10).map(|i| s.read_block(&a, "u", i, small)).collect();
        assert_eq!(s.allocated(&a, "u", small), vec![0, 1, 2]);
        s.pin(&a, "u", small);
        let big = 40 * BLOCK;
        assert_eq!(
            s.allocated(&a, "u", big),
            vec![0, 1, 2],
            "no block appears on growth"
        );
        for (i, b) in before.iter().enumerate() {
            assert_eq!(&s.read_block(&a, "u", i as u64, big), b);
        }
        s.write_at(&a, "u", big, 30 * BLOCK, b"x").unwrap();
        assert_eq!(s.read_block(&a, "u", 0, big), before[0]);
        assert_eq!(s.allocated(&a, "u", big), vec![0, 1, 2, 30]);
    }

    #[test]
    fn cap_is_enforced() {
        let s = VdiStore::default();
        s.set_cap(2 * BLOCK);
        let a = Ref::from("OpaqueRef:a");
        s.create_empty(&a);
        s.write_at(&a, "u", 10 * BLOCK, 0, &vec![1u8; 2 * BLOCK as usize])
            .unwrap();
        let e = s
            .write_at(&a, "u", 10 * BLOCK, 3 * BLOCK, &[1])
            .unwrap_err();
        assert_eq!(e.code, "SR_BACKEND_FAILURE_44");
        // Overwriting an owned block in place fits.
        s.write_at(&a, "u", 10 * BLOCK, 0, &[2]).unwrap();
    }

    #[test]
    fn whole_blocks_move_in_as_they_are() {
        let s = VdiStore::default();
        s.set_cap(3 * BLOCK);
        let a = Ref::from("OpaqueRef:a");
        let size = 4 * BLOCK + 100;
        s.create_empty(&a);
        let full = vec![7u8; BLOCK as usize];
        s.write_block(&a, "u", size, 1, full.clone()).unwrap();
        assert_eq!(s.read_block(&a, "u", 1, size), full);
        assert_eq!(s.used(), BLOCK);
        // the last, short block of the disk is whole at its own length
        s.write_block(&a, "u", size, 4, vec![9u8; 100]).unwrap();
        assert_eq!(s.read_block(&a, "u", 4, size), vec![9u8; 100]);
        // a piece of a block is written into it
        s.write_block(&a, "u", size, 2, vec![5u8; 10]).unwrap();
        let b2 = s.read_block(&a, "u", 2, size);
        assert_eq!((&b2[..10], b2[10]), (&[5u8; 10][..], 0));
        assert_eq!(s.used(), 2 * BLOCK + 100);
        // zeros make a hole and give the space back
        s.write_block(&a, "u", size, 1, vec![0u8; BLOCK as usize])
            .unwrap();
        assert_eq!(s.allocated(&a, "u", size), vec![2, 4]);
        assert_eq!(s.used(), BLOCK + 100);
        // past the cap: refused, and nothing changes
        s.write_block(&a, "u", size, 0, full.clone()).unwrap();
        let e = s.write_block(&a, "u", size, 1, full).unwrap_err();
        assert_eq!(e.code, "SR_BACKEND_FAILURE_44");
        assert_eq!(s.allocated(&a, "u", size), vec![0, 2, 4]);
    }
}
