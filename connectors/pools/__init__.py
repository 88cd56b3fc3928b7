"""Reference pools shipped with cpnode: `local` (real processes on this host)."""
