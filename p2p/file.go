package p2p

import (
	"os"
	"path/filepath"
)

// ReplaceFile writes data to the file at path, readable by its owner only,
// replacing the file there if there is one. A reader sees the old file or
// the new one, never a part of either: data goes to a temporary file in the
// same directory, which is synced to disk, so that the new file survives a
// power cut and not only a crash, and then renamed to path. On failure the
// temporary file is removed and path is left as it was.
func ReplaceFile(path string, data []byte) error {
	tmp, err := writeTemp(filepath.Dir(path), filepath.Base(path)+".tmp*", data)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return nil
}

// writeTemp writes data to a new file in dir, named by pattern as
// os.CreateTemp does and readable by its owner only, syncs it and returns
// its name. On failure it removes the file.
func writeTemp(dir, pattern string, data []byte) (string, error) {
	f, err := os.CreateTemp(dir, pattern) // mode 0600
	if err != nil {
		return "", err
	}
	if err := writeSynced(f, data); err != nil {
		_ = os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// writeSynced writes data to f, syncs it to disk and closes it.
func writeSynced(f *os.File, data []byte) error {
	_, err := f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
