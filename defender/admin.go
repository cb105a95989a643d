package defender

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Blocks lists blocked identities one page at a time: start with cursor "",
// stop when next is "". limit <= 0 means 100. It reads only block keys
// (never counters) through Backend.Scan, so a page costs what the store's
// scan of one page costs, never a load of the whole store. A page may hold
// fewer than limit blocks while more remain.
func (d *Defender) Blocks(ctx context.Context, cursor string, limit int) (blocks []BlockInfo, next string, err error) {
	if d.closed.Load() {
		return nil, "", ErrClosed
	}
	if limit <= 0 {
		limit = 100
	}
	prefix := d.prefix + ":" + string(slotBlock) + ":"
	entries, next, err := d.store.Scan(ctx, prefix, cursor, limit)
	if err != nil {
		return nil, "", fmt.Errorf("defender: listing blocks: %w", err)
	}
	blocks = make([]BlockInfo, 0, len(entries))
	seen := make(map[string]bool, len(entries))
	for _, e := range entries {
		slot, id, ok := parseKey(d.prefix, e.Key)
		if !ok || slot != slotBlock || seen[e.Key] {
			continue
		}
		seen[e.Key] = true
		var v blockValue
		if json.Unmarshal(e.Value, &v) == nil {
			if v.Username != "" {
				id.username = v.Username
			}
		}
		blocks = append(blocks, BlockInfo{
			Kind:             id.kind,
			IP:               id.ip,
			Username:         id.username,
			Count:            v.Count,
			Permanent:        e.TTL == 0,
			Remaining:        e.TTL,
			SecondsRemaining: int64((e.TTL + time.Second - 1) / time.Second),
		})
	}
	return blocks, next, nil
}

// UnblockIP removes the block and failure counter of ip, given as an address
// (any address of an IPv6 prefix unblocks the prefix) or as a prefix in the
// form BlockInfo shows ("2001:db8::/64"). It reports whether a block existed
// and fires EventUnblocked when one did.
func (d *Defender) UnblockIP(ctx context.Context, ip string) (bool, error) {
	id, ok := parseIPIdentity(ip, d.cfg.IPv6Prefix)
	if !ok {
		return false, fmt.Errorf("%w: %q is not an IP address or prefix", ErrBadIdentity, ip)
	}
	return d.unblock(ctx, identity{kind: KindIP, ip: id})
}

// UnblockUsername removes the block and failure counter of username (in any
// spelling that canonicalises to it). It reports whether a block existed and
// fires EventUnblocked when one did.
func (d *Defender) UnblockUsername(ctx context.Context, username string) (bool, error) {
	u := d.Canonical(ctx, username)
	if u == "" {
		return false, fmt.Errorf("%w: empty username", ErrBadIdentity)
	}
	return d.unblock(ctx, identity{kind: KindUsername, username: u})
}

// UnblockPair removes the block and counter of the (ip, username) pair.
func (d *Defender) UnblockPair(ctx context.Context, ip, username string) (bool, error) {
	id, ok := parseIPIdentity(ip, d.cfg.IPv6Prefix)
	if !ok {
		return false, fmt.Errorf("%w: %q is not an IP address or prefix", ErrBadIdentity, ip)
	}
	u := d.Canonical(ctx, username)
	if u == "" {
		return false, fmt.Errorf("%w: empty username", ErrBadIdentity)
	}
	return d.unblock(ctx, identity{kind: KindPair, ip: id, username: u})
}

func (d *Defender) unblock(ctx context.Context, id identity) (bool, error) {
	if d.closed.Load() {
		return false, ErrClosed
	}
	bk := id.key(d.prefix, slotBlock)
	es, err := d.store.Get(ctx, []string{bk})
	if err != nil {
		return false, fmt.Errorf("defender: unblock %s: %w", id.kind, err)
	}
	if err := d.store.Delete(ctx, bk, id.key(d.prefix, slotCounter)); err != nil {
		return false, fmt.Errorf("defender: unblock %s: %w", id.kind, err)
	}
	d.forget(ctx, bk)
	if d.local != nil {
		_ = d.local.Delete(ctx, bk, id.key(d.prefix, slotCounter))
	}
	existed := len(es) == 1 && es[0].Found
	if existed {
		if d.metrics != nil {
			d.metrics.Unblock(id.kind)
		}
		d.emit(Event{Kind: EventUnblocked, Identity: id.kind, IP: id.ip, Username: id.username})
		d.log.Info("defender: unblocked", "kind", string(id.kind), "ip", id.ip, "username", strings.ToValidUTF8(id.username, "?"))
	}
	return existed, nil
}
