//! From a launched campaign to encrypted web pushes (being written).
