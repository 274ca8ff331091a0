//! Prints the sysctl oids the kernel module registers, from the table: the node, then every
//! row not marked `host_only`, one `name<TAB>leaf<TAB>description` line each.
//! `geom_multipath/kmod/check-ko.py` checks a linked module's `set_sysctl_set` against it.

use geom_multipath_sysctl::{NODE, NODE_DESCRIPTION, TABLE};

fn main() {
    let node_leaf = NODE.rsplit('.').next().unwrap_or(NODE);
    println!("{NODE}\t{node_leaf}\t{NODE_DESCRIPTION}");
    for t in TABLE.iter().filter(|t| !t.host_only) {
        println!("{}\t{}\t{}", t.name, t.leaf, t.description);
    }
}
