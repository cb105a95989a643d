package memory

// Immediate reports true: the store never waits for I/O, so the engine
// skips the per-call deadline (and its timer) on the login hot path.
func (s *Store) Immediate() bool { return true }

// BorrowsKeys reports true: the store copies every key it keeps (see
// backend.KeyBorrower).
func (s *Store) BorrowsKeys() bool { return true }
