//! The plugin build's memory allocator: free lists of power-of-two size classes.
//!
//! Every plugin call runs in a fresh instance that lives for microseconds, allocates a few
//! hundred small blocks (strings, map nodes, the host's copies of query results) and is thrown
//! away whole. libc's general-purpose `malloc` (dlmalloc) was a third of the spreadscaler's guest
//! time for that pattern (docs/decisions/0007-plugin-call-guest-code.md). Here a small
//! block is popped from its class's free list, or cut from a chunk, and a freed one is pushed
//! back: a handful of instructions each. Blocks larger than [`LARGEST`] or more aligned than
//! [`ALIGN`] go to the system allocator, and so do the chunks.
//!
//! Memory use stays bounded: a freed block is reused by the next allocation of its class, so a
//! call's footprint is its peak of live blocks per class (at most twice the bytes asked for),
//! not the sum of everything it ever allocated.
//!
//! A plugin that wants another global allocator turns this one off with
//! `default-features = false` on its `trellis-sdk` dependency.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;

/// The smallest class (a free block must hold the next-block pointer).
const SMALLEST: usize = 8;
/// The largest block served from a class.
const LARGEST: usize = 2048;
/// The largest alignment served from a class; blocks are cut at multiples of their size (up to
/// this), so a class of size `s` is aligned to `min(s, ALIGN)`.
const ALIGN: usize = 16;
/// Classes 8, 16, …, 2048.
const CLASSES: usize = (LARGEST.trailing_zeros() - SMALLEST.trailing_zeros() + 1) as usize;
/// What the system allocator is asked for when a class has no free block and the current
/// chunk is used up.
const CHUNK: usize = 16 << 10;

/// The class of a request, or `None` when the system allocator serves it.
#[inline(always)]
fn class_of(layout: Layout) -> Option<usize> {
    if layout.size() > LARGEST || layout.align() > ALIGN {
        return None;
    }
    let size = layout.size().max(layout.align()).max(SMALLEST);
    Some((size.next_power_of_two().trailing_zeros() - SMALLEST.trailing_zeros()) as usize)
}

/// The block size of class `class`.
#[inline(always)]
fn size_of_class(class: usize) -> usize {
    SMALLEST << class
}

struct State {
    /// Head of each class's free list; each free block starts with the address of the next.
    free: [*mut u8; CLASSES],
    /// The unused rest of the current chunk.
    next: usize,
    end: usize,
}

/// The allocator. Plugins are single-threaded (`wasm32-wasip2` without the atomics feature has
/// no threads), so the state needs no lock.
pub struct SizeClasses(UnsafeCell<State>);

// SAFETY: only compiled for targets without threads (see the `cfg` where it is installed).
unsafe impl Sync for SizeClasses {}

impl SizeClasses {
    pub const fn new() -> Self {
        Self(UnsafeCell::new(State {
            free: [std::ptr::null_mut(); CLASSES],
            next: 0,
            end: 0,
        }))
    }

    /// Cuts a block of `size` bytes (a power of two) from the current chunk, starting a new chunk
    /// when it does not fit. The tail of the old chunk is left unused.
    #[cold]
    unsafe fn cut(&self, size: usize) -> *mut u8 {
        // SAFETY: single-threaded, and no reference into the state outlives this function.
        let state = unsafe { &mut *self.0.get() };
        let align = size.min(ALIGN);
        let mut start = (state.next + align - 1) & !(align - 1);
        if start + size > state.end {
            // SAFETY: CHUNK and ALIGN make a valid, non-zero layout.
            let chunk = unsafe { System.alloc(Layout::from_size_align_unchecked(CHUNK, ALIGN)) };
            if chunk.is_null() {
                return chunk;
            }
            start = chunk as usize;
            state.end = start + CHUNK;
        }
        state.next = start + size;
        start as *mut u8
    }
}

impl Default for SizeClasses {
    fn default() -> Self {
        Self::new()
    }
}

unsafe impl GlobalAlloc for SizeClasses {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(class) = class_of(layout) else {
            // SAFETY: forwarded from the caller.
            return unsafe { System.alloc(layout) };
        };
        // SAFETY: single-threaded; the borrow ends before `cut` borrows again.
        let head = unsafe { &mut (*self.0.get()).free[class] };
        let block = *head;
        if block.is_null() {
            // SAFETY: as above.
            return unsafe { self.cut(size_of_class(class)) };
        }
        // SAFETY: a free block holds the address of the next one in its first word.
        *head = unsafe { block.cast::<*mut u8>().read() };
        block
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let Some(class) = class_of(layout) else {
            // SAFETY: forwarded from the caller: `ptr` came from `System.alloc(layout)`.
            return unsafe { System.dealloc(ptr, layout) };
        };
        // SAFETY: single-threaded; `ptr` is a block of this class (same layout as allocated),
        // at least SMALLEST bytes and aligned for a pointer.
        unsafe {
            let head = &mut (*self.0.get()).free[class];
            ptr.cast::<*mut u8>().write(*head);
            *head = ptr;
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // Growing within the block's class (a string pushed onto) keeps the block.
        // SAFETY: the caller guarantees `new_size` with `layout.align()` is a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let (old, new) = (class_of(layout), class_of(new_layout));
        if old.is_some() && old == new {
            return ptr;
        }
        if old.is_none() && new.is_none() {
            // SAFETY: forwarded from the caller.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // SAFETY: forwarded from the caller; the blocks do not overlap.
        unsafe {
            let moved = self.alloc(new_layout);
            if !moved.is_null() {
                std::ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
            moved
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_cover_size_and_alignment() {
        let class = |size, align| class_of(Layout::from_size_align(size, align).unwrap());
        assert_eq!(class(1, 1), Some(0));
        assert_eq!(class(8, 8), Some(0));
        assert_eq!(class(9, 1), Some(1));
        assert_eq!(class(24, 8), Some(2));
        assert_eq!(class(4, 16), Some(1));
        assert_eq!(class(LARGEST, 1), Some(CLASSES - 1));
        assert_eq!(class(LARGEST + 1, 1), None);
        assert_eq!(class(8, 32), None);
        for size in 1..=LARGEST {
            for align in [1, 2, 4, 8, 16] {
                let c = class(size, align).unwrap();
                assert!(size_of_class(c) >= size.max(align), "{size} {align}");
            }
        }
    }

    /// The allocator works natively too (it is only installed for wasm): blocks are aligned,
    /// distinct while live, reused once freed, and keep their bytes across a realloc.
    #[test]
    fn allocates_reuses_and_reallocates() {
        let heap = SizeClasses::new();
        let layout = |size, align| Layout::from_size_align(size, align).unwrap();
        unsafe {
            let mut live = Vec::new();
            for (i, (size, align)) in [(1, 1), (7, 1), (24, 8), (33, 16), (700, 4), (5000, 8)]
                .into_iter()
                .cycle()
                .take(600)
                .enumerate()
            {
                let l = layout(size, align);
                let p = heap.alloc(l);
                assert!(!p.is_null());
                assert_eq!(p as usize % align, 0);
                p.write_bytes(i as u8, size);
                live.push((p, l, i as u8));
            }
            for (p, l, fill) in &live {
                assert!(
                    (0..l.size()).all(|k| *p.add(k) == *fill),
                    "a block was overwritten"
                );
            }
            let small = live.iter().rposition(|(_, l, _)| l.size() <= LARGEST);
            let (p, l, _) = live.remove(small.unwrap());
            heap.dealloc(p, l);
            assert_eq!(heap.alloc(l), p, "a freed block is reused first");
            heap.dealloc(p, l);

            let small = heap.alloc(layout(5, 1));
            small.copy_from_nonoverlapping(b"hello".as_ptr(), 5);
            let same = heap.realloc(small, layout(5, 1), 8);
            assert_eq!(same, small, "growth within the class keeps the block");
            let big = heap.realloc(same, layout(8, 1), 4000);
            assert_eq!(std::slice::from_raw_parts(big, 5), b"hello");
            let back = heap.realloc(big, layout(4000, 1), 3);
            assert_eq!(std::slice::from_raw_parts(back, 3), b"hel");
            heap.dealloc(back, layout(3, 1));
            for (p, l, _) in live {
                heap.dealloc(p, l);
            }
        }
    }
}
