package docker

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// ErrContextTooLarge is returned when a build context is over
// Config.MaxContextBytes.
var ErrContextTooLarge = errors.New("build context too large")

// writeContextTar writes the build context to w as a tar stream: every
// file under r.contextDir except .git and what ign excludes, symlinks
// stored as symlinks (the engine resolves them inside the context, never on
// this host), owners reset to root. When the Dockerfile lies outside the
// context it is added under extraName. More than max bytes of content fails
// with ErrContextTooLarge.
func writeContextTar(w io.Writer, r resolvedPaths, extraName string, max int64, ign *contextIgnore) error {
	tw := tar.NewWriter(w)
	var total int64
	count := func(n int64) error {
		if total += n; total > max {
			return fmt.Errorf("%w: more than %d bytes", ErrContextTooLarge, max)
		}
		return nil
	}
	err := filepath.WalkDir(r.contextDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("reading context: %w", unwrapPathError(err))
		}
		if path == r.contextDir {
			return nil
		}
		if d.Name() == ".git" {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		rel, err := filepath.Rel(r.contextDir, path)
		if err != nil {
			return err
		}
		skip, skipTree, err := ign.skip(filepath.ToSlash(rel), d.IsDir())
		switch {
		case err != nil:
			return err
		case skipTree:
			return filepath.SkipDir
		case skip:
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return fmt.Errorf("reading context: %w", unwrapPathError(err))
		}
		link := ""
		switch {
		case fi.Mode().IsRegular(), fi.IsDir():
		case fi.Mode()&fs.ModeSymlink != 0:
			if link, err = os.Readlink(path); err != nil {
				return fmt.Errorf("reading context: %w", unwrapPathError(err))
			}
		default:
			return nil // sockets, devices, fifos: git never makes them
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if fi.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		if err := count(512 + hdr.Size); err != nil {
			return err
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if fi.Mode().IsRegular() {
			return copyFile(tw, path, hdr.Size)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if extraName != "" {
		data, err := os.ReadFile(r.dockerfile)
		if err != nil {
			return fmt.Errorf("reading Dockerfile: %w", unwrapPathError(err))
		}
		if err := count(512 + int64(len(data))); err != nil {
			return err
		}
		hdr := &tar.Header{Name: extraName, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := tw.Write(data); err != nil {
			return err
		}
	}
	return tw.Close()
}

func copyFile(w io.Writer, path string, size int64) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("reading context: %w", unwrapPathError(err))
	}
	defer f.Close()
	if _, err := io.CopyN(w, f, size); err != nil {
		return fmt.Errorf("reading context: %w", unwrapPathError(err))
	}
	return nil
}
