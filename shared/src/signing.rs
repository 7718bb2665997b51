//! TODO(owner: see module plan)
