package redact

import (
	"regexp"
	"strings"
)

// program is what redaction knows of one program: the flags that carry a
// credential for it alone, operands that are credentials, and whether it
// runs other commands (a wrapper) or shell strings.
type program struct {
	flags      []flagRule
	positional func(operands []string) []int // indices of operands that are credentials
	wrapper    bool                          // its operands may form another command: sudo, env, ssh
	shell      bool                          // -c takes a shell string
}

// flagRule is a flag that carries a credential for one program.
type flagRule struct {
	name     string // as written: "-p", "-pw", "--password="
	attached bool   // the value is the rest of the argument: -pSECRET
	separate bool   // the value is the next argument: -a SECRET
	split    string // the credential follows the first of these bytes in the value (user:pass); "": all of it
}

// match applies the program's flag rules to args[i]: it returns the
// argument to mask, the range of it, and true when a rule matched (the
// range may be empty: -p alone makes mysql prompt).
func (p *program) match(args []string, i int) (idx, from, to int, ok bool) {
	a := args[i]
	for _, f := range p.flags {
		switch {
		case f.separate && a == f.name:
			if i+1 >= len(args) {
				return i, 0, 0, true
			}
			from := valueStart(args[i+1], f.split)
			if from < 0 {
				return i + 1, 0, 0, true
			}
			return i + 1, from, len(args[i+1]), true
		case f.attached && strings.HasPrefix(a, f.name) && len(a) > len(f.name):
			from := valueStart(a[len(f.name):], f.split)
			if from < 0 {
				return i, 0, 0, true
			}
			return i, len(f.name) + from, len(a), true
		}
	}
	return 0, 0, 0, false
}

// valueStart is where the credential starts in a flag's value: after the
// first split byte, or at 0; -1 when a split value has none.
func valueStart(v, split string) int {
	if split == "" {
		return 0
	}
	if i := strings.IndexAny(v, split); i >= 0 {
		return i + 1
	}
	return -1
}

func attached(name string) flagRule { return flagRule{name: name, attached: true} }
func separate(name string) flagRule { return flagRule{name: name, separate: true} }
func both(name string) flagRule     { return flagRule{name: name, attached: true, separate: true} }
func userPass(name, split string) []flagRule {
	return []flagRule{{name: name, separate: true, split: split}, {name: name + "=", attached: true, split: split}}
}

// programs are keyed by the base name of argv[0] (or of a wrapper's
// operand), lower case. A flag listed here means a credential for that
// program only: `ssh -p 22` keeps its port.
var programs = map[string]*program{}

func init() {
	add := func(p *program, names ...string) {
		for _, n := range names {
			programs[n] = p
		}
	}
	// MySQL and MariaDB clients: -pSECRET (attached; -p alone prompts,
	// and the next argument is a database).
	add(&program{flags: []flagRule{attached("-p")}},
		"mysql", "mysqldump", "mysqladmin", "mysqlimport", "mysqlcheck", "mysqlshow", "mysqlpump",
		"mysqlslap", "mysqlbinlog", "mysqlsh", "mariadb", "mariadb-dump", "mariadb-admin", "mariadb-import",
		"mariadb-check", "mariadb-show", "mariadb-binlog")
	add(&program{flags: []flagRule{both("-a")}}, "redis-cli", "keydb-cli", "valkey-cli", "redis-benchmark")
	add(&program{flags: []flagRule{both("-p")}, wrapper: true}, "sshpass")
	add(&program{flags: []flagRule{separate("-pw")}}, "plink", "pscp", "psftp", "putty")
	add(&program{flags: append(append(userPass("-u", ":"), userPass("--user", ":")...),
		append(userPass("-U", ":"), userPass("--proxy-user", ":")...)...)}, "curl")
	add(&program{flags: append(userPass("-a", ":"), userPass("--auth", ":")...)}, "http", "https", "httpie")
	add(&program{flags: userPass("-A", ":")}, "ab")
	add(&program{flags: userPass("-u", ",")}, "lftp")
	add(&program{flags: append(userPass("-U", "%"), userPass("--user", "%")...)}, "smbclient", "rpcclient", "smbmap", "smbget")
	// openssl -pass pass:SECRET / -passin / -passout; -k SECRET.
	add(&program{flags: []flagRule{
		{name: "-pass", separate: true, split: ":"}, {name: "-passin", separate: true, split: ":"},
		{name: "-passout", separate: true, split: ":"}, separate("-k"), separate("-K"),
	}, positional: func(ops []string) []int { // openssl passwd [-1|-6 ...] SECRET
		if len(ops) > 1 && ops[0] == "passwd" && !isFlag(ops[len(ops)-1]) {
			return []int{len(ops) - 1}
		}
		return nil
	}}, "openssl")
	add(&program{flags: []flagRule{separate("-storepass"), separate("-keypass"), separate("-srcstorepass"),
		separate("-deststorepass"), separate("-srckeypass"), separate("-destkeypass"), separate("-new")}}, "keytool", "jarsigner")
	add(&program{flags: []flagRule{separate("-P"), attached("--password=")}}, "zip", "zipcloak")
	add(&program{flags: []flagRule{attached("-p")}}, "7z", "7za", "7zr", "rar", "unrar")
	add(&program{flags: []flagRule{separate("-w")}}, "ldapsearch", "ldapadd", "ldapmodify", "ldapdelete",
		"ldapmodrdn", "ldapcompare", "ldapwhoami", "ldapexop", "ldappasswd")
	add(&program{flags: []flagRule{both("-p")}}, "mongo", "mongosh", "mongodump", "mongorestore", "mongoexport", "mongoimport")
	add(&program{flags: []flagRule{separate("-P")}}, "sqlcmd", "bcp", "osql", "mosquitto_pub", "mosquitto_sub", "mosquitto_rr")
	add(&program{flags: []flagRule{separate("-p")}}, "rabbitmqadmin", "rdesktop", "useradd", "usermod")
	add(&program{flags: []flagRule{attached("/p:"), attached("/password:")}}, "xfreerdp", "wlfreerdp", "sdl-freerdp")
	add(&program{flags: []flagRule{separate("-passwd")}}, "x11vnc")
	add(&program{flags: []flagRule{separate("-password")}}, "influx")
	add(&program{flags: []flagRule{separate("-p")}}, "az")
	// Credentials as operands.
	add(&program{positional: func(ops []string) []int {
		// rabbitmqctl add_user NAME PASSWORD, change_password NAME PASSWORD
		for i, o := range ops {
			if (o == "add_user" || o == "change_password" || o == "authenticate_user") && i+2 < len(ops) {
				return []int{i + 2}
			}
		}
		return nil
	}}, "rabbitmqctl")
	add(&program{positional: func(ops []string) []int {
		// htpasswd -b[cmBdps...] FILE USER PASSWORD: the last operand.
		if len(ops) > 0 && strings.HasPrefix(ops[0], "-") && strings.Contains(ops[0], "b") {
			return []int{len(ops) - 1}
		}
		return nil
	}}, "htpasswd")
	add(&program{positional: func(ops []string) []int {
		if len(ops) == 2 { // wpa_passphrase SSID PASSPHRASE
			return []int{1}
		}
		return nil
	}}, "wpa_passphrase")
	add(&program{positional: func(ops []string) []int {
		// vault login TOKEN; vault write auth/... password=... is an assignment.
		for i, o := range ops {
			if o == "login" && i+1 < len(ops) && !isFlag(ops[i+1]) && !strings.Contains(ops[i+1], "=") {
				return []int{i + 1}
			}
		}
		return nil
	}}, "vault")
	add(&program{positional: func(ops []string) []int {
		// aws configure set aws_secret_access_key VALUE
		for i, o := range ops {
			if secretName(o) && i+1 < len(ops) && i > 0 && ops[i-1] == "set" {
				return []int{i + 1}
			}
		}
		return nil
	}}, "aws")
	// docker login -p SECRET (elsewhere -p publishes a port).
	add(&program{wrapper: true, positional: func(ops []string) []int {
		for i, o := range ops {
			if o != "login" {
				continue
			}
			for j := i + 1; j+1 < len(ops); j++ {
				if ops[j] == "-p" || ops[j] == "--password" {
					return []int{j + 1}
				}
			}
		}
		return nil
	}}, "docker", "podman", "nerdctl", "buildah", "skopeo")
	// Programs that run other commands: their operands may start one.
	add(&program{wrapper: true}, "sudo", "doas", "env", "nohup", "nice", "ionice", "timeout", "time", "stdbuf",
		"setsid", "chrt", "taskset", "unbuffer", "flock", "runuser", "chroot", "xargs", "watch", "exec",
		"strace", "ltrace", "ssh", "kubectl", "oc", "nsenter", "ip", "systemd-run", "busybox")
	// Shells (and su): -c takes a command string.
	add(&program{shell: true, wrapper: true}, "sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "fish", "csh", "tcsh", "su")
}

// secretNameRe matches a name that holds a credential, by the word it ends
// with (db_password, --client-secret, AWS_SECRET_ACCESS_KEY, AccountKey).
// Key files are paths, not credentials: --key and --private-key are left.
var secretNameRe = regexp.MustCompile(`(?i)(^|[-_.])(pass|passwd|password|passphrase|pwd|pw|secret|secrets|token|tokens|auth|authorization|credential|credentials|creds|apikey|api[-_]?key|access[-_]?key|secret[-_]?key|client[-_]?secret|auth[-_]?key|account[-_]?key|master[-_]?key|encryption[-_]?key|signing[-_]?key|sas|sig|signature|session[-_]?token|security[-_]?token|bearer|jwt|cookie|otp|pin|psk|dsn)$|(password|passwd|passphrase|secret|token|apikey|accesskey|secretkey|accountkey)$`)

// booleanFlag matches flag names that end in a secret word but take no
// value (--no-password, --password-stdin, --ask-pass).
var booleanFlag = regexp.MustCompile(`(?i)^(no|ask|ask-become|ask-vault|prompt|use|with|without|skip|require|disable|enable|show|print|generate|gen|rotate|revoke|list|check|verify|new)[-_]|[-_](stdin|prompt|file|path|env|dir|id|name|type|length|len|url)$`)

// secretName reports whether a parameter or variable name holds a
// credential.
func secretName(name string) bool {
	name = strings.TrimLeft(name, "-")
	return secretNameRe.MatchString(name) && !booleanFlag.MatchString(name)
}

// secretFlag reports whether a flag without =value takes a credential as
// the next argument.
func secretFlag(name string) bool { return secretName(name) }

// userFlag reports whether a flag's value may be user:password.
func userFlag(name string) bool {
	switch strings.ToLower(strings.TrimLeft(name, "-")) {
	case "user", "proxy-user", "basic-auth", "http-user", "auth-user":
		return true
	}
	return false
}

// userPassword returns where the password starts in user:password, unless
// what follows the colon is a number (docker --user 1000:1000 is uid:gid).
func userPassword(v string) (int, bool) {
	i := strings.IndexByte(v, ':')
	if i < 0 || i == len(v)-1 || strings.Trim(v[i+1:], "0123456789") == "" {
		return 0, false
	}
	return i + 1, true
}
