package redis

// group is a set of keys that hash to one slot: idx are their positions in
// the caller's slice (ascending), keys the stored (prefixed) keys.
type group struct {
	idx  []int
	keys []string
}

// groups splits keys (without the prefix) into groups of one hash slot each,
// in order of first appearance. A standalone or Sentinel store has a single
// group.
func (s *Store) groups(keys []string) []group {
	pk := make([]string, len(keys))
	for i, k := range keys {
		pk[i] = s.key(k)
	}
	return s.groupsPrefixed(pk)
}

// groupsPrefixed is groups for keys that already carry the prefix.
func (s *Store) groupsPrefixed(pk []string) []group {
	if !s.grouped || len(pk) == 1 {
		idx := make([]int, len(pk))
		for i := range idx {
			idx[i] = i
		}
		return []group{{idx: idx, keys: pk}}
	}
	var gs []group
	bySlot := make(map[uint16]int, 2)
	byTag := make(map[string]int, 2)
	for i, k := range pk {
		// A cluster routes by slot; a Ring by hash tag (two tags of one
		// slot may live on different Ring shards).
		var j int
		var ok bool
		if s.ring {
			tag := HashTag(k)
			if j, ok = byTag[tag]; !ok {
				j = len(gs)
				byTag[tag] = j
			}
		} else {
			sl := Slot(k)
			if j, ok = bySlot[sl]; !ok {
				j = len(gs)
				bySlot[sl] = j
			}
		}
		if !ok {
			gs = append(gs, group{})
		}
		gs[j].idx = append(gs[j].idx, i)
		gs[j].keys = append(gs[j].keys, k)
	}
	return gs
}

// HashTag returns the part of key that Redis Cluster hashes: the text
// between the first "{" and the first "}" after it when that is not empty,
// otherwise the whole key.
func HashTag(key string) string {
	for i := 0; i < len(key); i++ {
		if key[i] == '{' {
			for j := i + 1; j < len(key); j++ {
				if key[j] == '}' {
					if j == i+1 {
						return key
					}
					return key[i+1 : j]
				}
			}
			return key
		}
	}
	return key
}

// Slot returns key's Redis Cluster hash slot (0..16383): CRC16 (XMODEM) of
// its hash tag, modulo 16384.
func Slot(key string) uint16 {
	return crc16(HashTag(key)) & 16383
}

var crcTable = func() (t [256]uint16) {
	for i := range t {
		c := uint16(i) << 8
		for j := 0; j < 8; j++ {
			if c&0x8000 != 0 {
				c = c<<1 ^ 0x1021
			} else {
				c <<= 1
			}
		}
		t[i] = c
	}
	return t
}()

func crc16(s string) uint16 {
	var c uint16
	for i := 0; i < len(s); i++ {
		c = c<<8 ^ crcTable[byte(c>>8)^s[i]]
	}
	return c
}
