// Independent check of rampart's checkpoints and proofs with Go's golang.org/x/mod
// sumdb/note (signed notes, Ed25519) and sumdb/tlog (RFC 6962/9162 proofs).
//
// usage: verify incl|cons|note PROOF.json VKEY...
// Prints "OK" and exits 0, or prints the error and exits 1.
package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io/ioutil"
	"os"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type incl struct {
	Index      int64    `json:"index"`
	TreeSize   int64    `json:"tree_size"`
	LeafData   string   `json:"leaf_data"`
	Proof      []string `json:"proof"`
	Checkpoint string   `json:"checkpoint"`
}

type cons struct {
	OldSize       int64    `json:"old_size"`
	NewSize       int64    `json:"new_size"`
	Proof         []string `json:"proof"`
	OldCheckpoint string   `json:"old_checkpoint"`
	NewCheckpoint string   `json:"new_checkpoint"`
}

func fail(err error) {
	fmt.Println("FAIL:", err)
	os.Exit(1)
}

// tree opens a signed checkpoint and parses its C2SP tlog-checkpoint body with tlog's
// own parser (which expects the go.sum origin line, so that line is swapped).
func tree(text string, vs note.Verifiers) tlog.Tree {
	n, err := note.Open([]byte(text), vs)
	if err != nil {
		fail(err)
	}
	parts := strings.SplitN(n.Text, "\n", 2)
	t, err := tlog.ParseTree([]byte("go.sum database tree\n" + parts[1]))
	if err != nil {
		fail(err)
	}
	return t
}

func hashes(in []string) []tlog.Hash {
	var out []tlog.Hash
	for _, s := range in {
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil || len(b) != tlog.HashSize {
			fail(fmt.Errorf("bad hash %q", s))
		}
		var h tlog.Hash
		copy(h[:], b)
		out = append(out, h)
	}
	return out
}

func main() {
	mode, file := os.Args[1], os.Args[2]
	var vs []note.Verifier
	for _, k := range os.Args[3:] {
		v, err := note.NewVerifier(k)
		if err != nil {
			fail(err)
		}
		vs = append(vs, v)
	}
	known := note.VerifierList(vs...)
	data, err := ioutil.ReadFile(file)
	if err != nil {
		fail(err)
	}
	switch mode {
	case "note":
		t := tree(string(data), known)
		fmt.Printf("OK %d %s\n", t.N, t.Hash)
		return
	case "incl":
		var p incl
		if err := json.Unmarshal(data, &p); err != nil {
			fail(err)
		}
		t := tree(p.Checkpoint, known)
		if t.N != p.TreeSize {
			fail(fmt.Errorf("checkpoint size %d, proof size %d", t.N, p.TreeSize))
		}
		leaf := tlog.RecordHash([]byte(p.LeafData))
		if err := tlog.CheckRecord(hashes(p.Proof), t.N, t.Hash, p.Index, leaf); err != nil {
			fail(err)
		}
	case "cons":
		var p cons
		if err := json.Unmarshal(data, &p); err != nil {
			fail(err)
		}
		o := tree(p.OldCheckpoint, known)
		n := tree(p.NewCheckpoint, known)
		if o.N != p.OldSize || n.N != p.NewSize {
			fail(fmt.Errorf("sizes do not match the checkpoints"))
		}
		if err := tlog.CheckTree(hashes(p.Proof), n.N, n.Hash, o.N, o.Hash); err != nil {
			fail(err)
		}
	default:
		fail(fmt.Errorf("unknown mode %s", mode))
	}
	fmt.Println("OK")
}
