package node

import (
	"encoding/binary"
	"fmt"

	"github.com/dboutique/dboutique/node/store"
	"github.com/dboutique/dboutique/node/wire"
)

// The encodings of msgScan, as messages.go describes them: one message
// type, whose first byte says what is listed.

// Modes of msgScan.
const (
	scanNames byte = 0 // a page of the names of the copies the replier lists (scan.go)
	scanKeys  byte = 1 // a page of one bucket's keys, from its primary
	scanCount byte = 2 // how many names the replier is the primary of
	scanBegin byte = 3 // the replier's mark, before a page is listed
)

// scanMark is where a member stands when it answers a msgScan (scan.go):
// the epoch of its view, and how many copies it has removed so far
// (store.Removals).
type scanMark struct {
	epoch, removals uint64
}

// maxPageItems caps the items of one page read from a peer: a page holds
// at most its count, and the few items that share the hash it ends at.
const maxPageItems = 2 * store.MaxScanCount

// scanRequest is the body of msgScan.
type scanRequest struct {
	mode byte
	// For scanKeys: the sender's view, how many more times the request
	// may be forwarded, and the bucket.
	epoch  uint64
	hops   int
	bucket string
	req    store.ScanRequest // not for scanCount
}

func (r scanRequest) append(b []byte) []byte {
	b = append(b, msgScan, r.mode)
	switch r.mode {
	case scanCount, scanBegin:
		return b
	case scanKeys:
		b = wire.AppendU64(b, r.epoch)
		b = append(b, byte(r.hops))
		b = wire.AppendString(b, r.bucket)
	}
	b = wire.AppendU64(b, r.req.Cursor)
	b = binary.AppendUvarint(b, uint64(r.req.Count))
	b = append(b, byte(r.req.Type))
	b = wire.AppendBool(b, r.req.NoValues)
	return wire.AppendString(b, r.req.Match)
}

// decodeScanRequest decodes a msgScan body (after the type byte), and
// validates the request in it.
func decodeScanRequest(b []byte) (scanRequest, error) {
	d := decoder{wire.NewDecoder(b)}
	r := scanRequest{mode: d.Byte()}
	switch r.mode {
	case scanCount, scanBegin:
		return r, d.Finish()
	case scanKeys:
		r.epoch = d.U64()
		r.hops = int(d.Byte())
		r.bucket = d.String()
	case scanNames:
	default:
		if d.Err() == nil {
			d.Failf("scan mode %d", r.mode)
		}
	}
	r.req.Cursor = d.U64()
	count := d.Uvarint()
	r.req.Type = store.NameType(d.Byte())
	r.req.NoValues = d.Bool()
	r.req.Match = d.String()
	if d.Err() == nil && count > store.MaxScanCount {
		d.Failf("scan count %d", count)
	}
	if err := d.Finish(); err != nil {
		return scanRequest{}, err
	}
	r.req.Count = int(count)
	if err := r.req.Validate(); err != nil {
		return scanRequest{}, fmt.Errorf("%w: %w", wire.ErrCorrupt, err)
	}
	if r.mode == scanKeys && r.bucket == "" {
		return scanRequest{}, fmt.Errorf("%w: scan of a bucket without a name", wire.ErrCorrupt)
	}
	return r, nil
}

// appendMarkReply encodes the reply to a msgScan of mode scanBegin.
func appendMarkReply(b []byte, m scanMark) []byte {
	return m.append(append(b, replyOK))
}

func (m scanMark) append(b []byte) []byte {
	return wire.AppendU64(wire.AppendU64(b, m.epoch), m.removals)
}

// decodeMarkReply decodes the reply to a msgScan of mode scanBegin.
func decodeMarkReply(b []byte) (scanMark, error) {
	d, err := replyBody(b)
	if err != nil {
		return scanMark{}, err
	}
	m := scanMark{epoch: d.U64(), removals: d.U64()}
	return m, d.Finish()
}

// appendNamesReply encodes the reply to a msgScan of mode scanNames: the
// replier's mark after it listed, and its page.
func appendNamesReply(b []byte, m scanMark, p store.Page) []byte {
	return appendPage(m.append(append(b, replyOK)), p, false)
}

// decodeNamesReply decodes the reply to a msgScan of mode scanNames for r.
func decodeNamesReply(b []byte, r store.ScanRequest) (scanMark, store.Page, error) {
	d, err := replyBody(b)
	if err != nil {
		return scanMark{}, store.Page{}, err
	}
	m := scanMark{epoch: d.U64(), removals: d.U64()}
	p, err := d.page(r, false)
	return m, p, err
}

// appendKeysReply encodes the reply to a msgScan of mode scanKeys: a page
// of a bucket's keys and values, or the error that stopped it.
func appendKeysReply(b []byte, p store.Page, err error) []byte {
	if err != nil {
		return appendReply(b, store.Result{}, err)
	}
	return appendPage(append(b, replyOK), p, true)
}

// decodeKeysReply decodes the reply to a msgScan of mode scanKeys for r.
func decodeKeysReply(b []byte, r store.ScanRequest) (store.Page, error) {
	d, err := replyBody(b)
	if err != nil {
		return store.Page{}, err
	}
	return d.page(r, true)
}

// replyBody returns a decoder of what follows replyOK in a reply to
// msgScan, or the error the replier sent.
func replyBody(b []byte) (*decoder, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty reply", wire.ErrCorrupt)
	}
	if b[0] != replyOK {
		_, err := decodeReply(b)
		if err == nil {
			err = fmt.Errorf("%w: a scan answered with a result", wire.ErrCorrupt)
		}
		return nil, err
	}
	return &decoder{wire.NewDecoder(b[1:])}, nil
}

// appendPage encodes a page: of names, or with keys of a bucket's keys
// and values.
func appendPage(b []byte, p store.Page, keys bool) []byte {
	b = wire.AppendBool(b, p.Full)
	b = wire.AppendU64(b, p.Last)
	b = binary.AppendUvarint(b, uint64(len(p.Items)))
	for _, it := range p.Items {
		if keys {
			b = wire.AppendString(b, it.Name)
			b = wire.AppendString(b, it.Value)
		} else {
			b = append(b, byte(it.Type))
			b = wire.AppendString(b, it.Name)
		}
	}
	return b
}

// page decodes the rest of a reply as a page for r (see appendPage). A
// page that does not answer r (an item before the cursor or after its
// end, a type a name cannot have) is corrupt.
func (d *decoder) page(r store.ScanRequest, keys bool) (store.Page, error) {
	var p store.Page
	p.Full = d.Bool()
	p.Last = d.U64()
	n := d.Count()
	if d.Err() == nil && n > maxPageItems {
		d.Failf("%d items in a page, at most %d", n, maxPageItems)
	}
	if d.Err() == nil && n > 0 {
		p.Items = make([]store.ScanItem, n)
	}
	for i := range p.Items {
		it := &p.Items[i]
		if keys {
			it.Name, it.Value = d.String(), d.String()
		} else {
			it.Type = store.NameType(d.Byte())
			it.Name = d.String()
			if d.Err() == nil && it.Type != store.TypeHash && it.Type != store.TypeString {
				d.Failf("a name of type %d", it.Type)
			}
		}
		if h := store.NameHash(it.Name); d.Err() == nil && (h < r.Cursor || p.Full && h > p.Last) {
			d.Failf("an item outside the page")
		}
	}
	if err := d.Finish(); err != nil {
		return store.Page{}, err
	}
	return p, nil
}

// appendCountReply encodes the reply to a msgScan of mode scanCount.
func appendCountReply(b []byte, count int, err error) []byte {
	if err != nil {
		return appendReply(b, store.Result{}, err)
	}
	return binary.AppendUvarint(append(b, replyOK), uint64(count))
}

// decodeCountReply decodes the reply to a msgScan of mode scanCount.
func decodeCountReply(b []byte) (int, error) {
	d, err := replyBody(b)
	if err != nil {
		return 0, err
	}
	c := d.Uvarint()
	if d.Err() == nil && c > 1<<62 {
		d.Failf("count %d", c)
	}
	if err := d.Finish(); err != nil {
		return 0, err
	}
	return int(c), nil
}
