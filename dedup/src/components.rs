//! Connected components by union-find: the in-memory reference the dedup stage's
//! DataFusion components (large-star / small-star) are tested against, and the tool for
//! graphs known to be small. Every component is named by its smallest node.

use std::collections::BTreeMap;

/// Union-find over arbitrary `u64` nodes, smallest node as root.
#[derive(Debug, Default, Clone)]
pub struct UnionFind {
    parent: BTreeMap<u64, u64>,
}

impl UnionFind {
    pub fn find(&mut self, x: u64) -> u64 {
        let mut root = x;
        while let Some(&p) = self.parent.get(&root) {
            if p == root {
                break;
            }
            root = p;
        }
        // Path compression.
        let mut node = x;
        while node != root {
            let next = self.parent.get(&node).copied().unwrap_or(root);
            self.parent.insert(node, root);
            node = next;
        }
        self.parent.entry(root).or_insert(root);
        root
    }

    pub fn union(&mut self, a: u64, b: u64) {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra != rb {
            let (lo, hi) = (ra.min(rb), ra.max(rb));
            self.parent.insert(hi, lo);
        }
    }

    /// Every node seen, with its component's smallest node.
    pub fn components(&mut self) -> BTreeMap<u64, u64> {
        let nodes: Vec<u64> = self.parent.keys().copied().collect();
        nodes.into_iter().map(|n| (n, self.find(n))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_are_named_by_their_smallest_node() {
        let mut uf = UnionFind::default();
        for (a, b) in [(5, 9), (9, 2), (7, 8), (2, 11), (100, 100)] {
            uf.union(a, b);
        }
        let c = uf.components();
        assert_eq!(c[&5], 2);
        assert_eq!(c[&11], 2);
        assert_eq!(c[&8], 7);
        assert_eq!(c[&100], 100);
        assert_eq!(c.len(), 7);
    }
}
