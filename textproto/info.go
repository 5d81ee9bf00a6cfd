package textproto

import (
	"strconv"
	"strings"
)

// InfoSection is one section of the INFO reply, in the manner of Redis's
// INFO: a name ("Server", "Memory", ...) and its fields, in order.
type InfoSection struct {
	Name   string
	Fields []InfoField
}

// InfoField is one "name:value" line of an InfoSection. Names are
// lower_snake_case; values are one line.
type InfoField struct {
	Name, Value string
}

// info returns the sections INFO answers with: those of Config.Info, with
// the server's own "Clients" and "Stats" fields added. With a section name, only the
// sections of that name (in any case); "all", "everything" and "default"
// name every section, as in Redis.
func (s *Server) info(section string) []InfoSection {
	var all []InfoSection
	if s.cfg.Info != nil {
		all = s.cfg.Info()
	}
	all = mergeSection(all, InfoSection{Name: "Clients", Fields: []InfoField{
		{"connected_clients", strconv.FormatInt(s.numConns.Load(), 10)},
		{"maxclients", strconv.Itoa(s.cfg.MaxConns)},
	}})
	all = mergeSection(all, InfoSection{Name: "Stats", Fields: []InfoField{
		{"total_connections_received", strconv.FormatUint(s.accepted.Load(), 10)},
		{"total_commands_processed", strconv.FormatUint(s.commands.Load(), 10)},
	}})
	switch strings.ToLower(section) {
	case "", "all", "everything", "default":
		return all
	}
	var out []InfoSection
	for _, sec := range all {
		if strings.EqualFold(sec.Name, section) {
			out = append(out, sec)
		}
	}
	return out
}

// mergeSection adds sec's fields to the section of the same name in secs,
// or sec at the end when there is none.
func mergeSection(secs []InfoSection, sec InfoSection) []InfoSection {
	for i := range secs {
		if strings.EqualFold(secs[i].Name, sec.Name) {
			secs[i].Fields = append(secs[i].Fields, sec.Fields...)
			return secs
		}
	}
	return append(secs, sec)
}

// formatInfo renders sections as Redis does: "# Name" then "name:value"
// lines, a blank line between sections, lines ending in "\r\n".
func formatInfo(secs []InfoSection) string {
	var b strings.Builder
	for i, sec := range secs {
		if i > 0 {
			b.WriteString("\r\n")
		}
		b.WriteString("# " + oneLine(sec.Name) + "\r\n")
		for _, f := range sec.Fields {
			b.WriteString(oneLine(f.Name) + ":" + oneLine(f.Value) + "\r\n")
		}
	}
	return b.String()
}
