package redact

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

const M = Mask

// line splits a command line on spaces (the cases need no quoting).
func line(s string) []string { return strings.Split(s, " ") }

// TestCredentials: the credential forms secret scanners and incident
// reports find in process listings, each with the ordinary arguments
// around it kept. The first 20 are the forms the issue tried against the
// agent (14 leaked).
func TestCredentials(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in, out []string
	}{
		// Forms from the issue.
		{"mysql -pS", line("mysql -u root -pS3cret -h db1 shop"), line("mysql -u root -p" + M + " -h db1 shop")},
		{"mysqldump --password=", line("mysqldump --user=backup --password=S3cret --all-databases"), line("mysqldump --user=backup --password=" + M + " --all-databases")},
		{"sshpass -p S", line("sshpass -p S3cret ssh -p 22 admin@web1"), line("sshpass -p " + M + " ssh -p 22 admin@web1")},
		{"redis-cli -a S", line("redis-cli -h cache -p 6379 -a S3cret ping"), line("redis-cli -h cache -p 6379 -a " + M + " ping")},
		{"curl -u u:S", line("curl -u admin:S3cret https://api.example.com/v1"), line("curl -u admin:" + M + " https://api.example.com/v1")},
		{"curl --user=u:S", line("curl --user=admin:S3cret https://x"), line("curl --user=admin:" + M + " https://x")},
		{"curl -H Authorization: Bearer", []string{"curl", "-H", "Authorization: Bearer S3cretT0ken", "https://x"}, []string{"curl", "-H", "Authorization: Bearer " + M, "https://x"}},
		{"--authorization=S", line("client --authorization=S3cret --verbose"), line("client --authorization=" + M + " --verbose")},
		{"password:S", line("tool password:S3cret mode:fast"), line("tool password:" + M + " mode:fast")},
		{"--secret-key=S", line("s3cmd --access-key=AKIDX --secret-key=S3cret ls"), line("s3cmd --access-key=" + M + " --secret-key=" + M + " ls")},
		{"--pwd S", line("app --pwd S3cret --port 8080"), line("app --pwd " + M + " --port 8080")},
		{"sh -c mysql", []string{"sh", "-c", "mysql -uroot -pS3cret shop < dump.sql"}, []string{"sh", "-c", "mysql -uroot -p" + M + " shop < dump.sql"}},
		{"bash -c export", []string{"bash", "-c", "export DB_PASSWORD='S3cret'; ./migrate --yes"}, []string{"bash", "-c", "export DB_PASSWORD='" + M + "'; ./migrate --yes"}},
		{"JSON argument", []string{"app", "--config", `{"user":"svc","password":"S3cret","port":5432}`}, []string{"app", "--config", `{"user":"svc","password":"` + M + `","port":5432}`}},
		{"URL password with /", line("psql postgres://app:p/ss@db:5432/shop"), line("psql postgres://app:" + M + "@db:5432/shop")},
		{"URL password with @", line("git clone https://bot:p@ss@git.example.com/repo.git"), line("git clone https://bot:" + M + "@git.example.com/repo.git")},
		{"--password S", line("app --password S3cret --user bob"), line("app --password " + M + " --user bob")},
		{"token=S", line("x token=S3cret verbose=1"), line("x token=" + M + " verbose=1")},
		{"URL password", line("psql postgres://bob:S3cret@db:5432/x"), line("psql postgres://bob:" + M + "@db:5432/x")},
		{"env assignment", line("env AWS_SECRET_ACCESS_KEY=S3cret aws s3 ls"), line("env AWS_SECRET_ACCESS_KEY=" + M + " aws s3 ls")},
		{"assignments", line("x DB_PASSWORD=pw AWS_ACCESS_KEY=k client_secret=s --user=bob"), line("x DB_PASSWORD=" + M + " AWS_ACCESS_KEY=" + M + " client_secret=" + M + " --user=bob")},

		// Program-keyed flags.
		{"plink -pw", line("plink -ssh -P 22 -pw S3cret admin@host uptime"), line("plink -ssh -P 22 -pw " + M + " admin@host uptime")},
		{"pscp -pw", line("pscp -pw S3cret file admin@host:/tmp"), line("pscp -pw " + M + " file admin@host:/tmp")},
		{"mariadb -p", line("/usr/bin/mariadb -pS3cret -e select"), line("/usr/bin/mariadb -p" + M + " -e select")},
		{"mysqladmin", line("mysqladmin -uroot -pS3cret status"), line("mysqladmin -uroot -p" + M + " status")},
		{"redis-cli -aS", line("redis-cli -aS3cret info"), line("redis-cli -a" + M + " info")},
		{"sudo mysql", line("sudo -u app mysql -pS3cret"), line("sudo -u app mysql -p" + M)},
		{"ssh remote mysql", line("ssh -p 2222 db1 mysql -pS3cret -e status"), line("ssh -p 2222 db1 mysql -p" + M + " -e status")},
		{"ssh remote string", []string{"ssh", "db1", "redis-cli -a S3cret ping"}, []string{"ssh", "db1", "redis-cli -a " + M + " ping"}},
		{"openssl -passin", line("openssl rsa -in key.pem -passin pass:S3cret -out plain.pem"), line("openssl rsa -in key.pem -passin pass:" + M + " -out plain.pem")},
		{"openssl passwd", line("openssl passwd -6 S3cret"), line("openssl passwd -6 " + M)},
		{"keytool -storepass", line("keytool -list -keystore ks.jks -storepass S3cret"), line("keytool -list -keystore ks.jks -storepass " + M)},
		{"zip -P", line("zip -r -P S3cret out.zip dir"), line("zip -r -P " + M + " out.zip dir")},
		{"7z -p", line("7z x -pS3cret archive.7z"), line("7z x -p" + M + " archive.7z")},
		{"ldapsearch -w", line("ldapsearch -x -D cn=admin -w S3cret -b dc=x"), line("ldapsearch -x -D cn=admin -w " + M + " -b dc=x")},
		{"mongosh -p", line("mongosh -u admin -p S3cret --authenticationDatabase admin"), line("mongosh -u admin -p " + M + " --authenticationDatabase admin")},
		{"sqlcmd -P", line("sqlcmd -S db -U sa -P S3cret -Q select"), line("sqlcmd -S db -U sa -P " + M + " -Q select")},
		{"mosquitto_pub -P", line("mosquitto_pub -h broker -u dev -P S3cret -t t -m hi"), line("mosquitto_pub -h broker -u dev -P " + M + " -t t -m hi")},
		{"smbclient -U u%p", line("smbclient //fs/share -U alice%S3cret"), line("smbclient //fs/share -U alice%" + M)},
		{"lftp -u u,p", line("lftp -u alice,S3cret ftp.example.com"), line("lftp -u alice," + M + " ftp.example.com")},
		{"httpie -a", line("http -a alice:S3cret GET api.example.com"), line("http -a alice:" + M + " GET api.example.com")},
		{"xfreerdp /p:", line("xfreerdp /u:admin /p:S3cret /v:host"), line("xfreerdp /u:admin /p:" + M + " /v:host")},
		{"rabbitmqctl add_user", line("rabbitmqctl add_user monitor S3cret"), line("rabbitmqctl add_user monitor " + M)},
		{"htpasswd -b", line("htpasswd -bc /etc/nginx/htpasswd admin S3cret"), line("htpasswd -bc /etc/nginx/htpasswd admin " + M)},
		{"vault login", line("vault login hvs.CAESIJlU9JMYEhOPYv4"), line("vault login " + M)},
		{"aws configure set", line("aws configure set aws_secret_access_key S3cret"), line("aws configure set aws_secret_access_key " + M)},
		{"docker login -p", line("docker login -u bot -p S3cret registry.example.com"), line("docker login -u bot -p " + M + " registry.example.com")},
		{"useradd -p hash", line("useradd -m -p $6$salt$hash alice"), line("useradd -m -p " + M + " alice")},

		// Generic flags and assignments.
		{"--client-secret", line("oauth --client-id app --client-secret S3cret"), line("oauth --client-id app --client-secret " + M)},
		{"--token", line("kubectl --token=S3cret get pods"), line("kubectl --token=" + M + " get pods")},
		{"--api-key", line("agent --api-key S3cret --site eu"), line("agent --api-key " + M + " --site eu")},
		{"--passphrase", line("gpg --batch --passphrase S3cret -d f.gpg"), line("gpg --batch --passphrase " + M + " -d f.gpg")},
		{"-Dpassword java", line("java -Djavax.net.ssl.keyStorePassword=S3cret -jar app.jar"), line("java -Djavax.net.ssl.keyStorePassword=" + M + " -jar app.jar")},
		{"PGPASSWORD", []string{"sh", "-c", "PGPASSWORD=S3cret psql -h db -U app"}, []string{"sh", "-c", "PGPASSWORD=" + M + " psql -h db -U app"}},
		{"connection string", []string{"app", "Server=db;Database=shop;User Id=sa;Password=S3cret;"}, []string{"app", "Server=db;Database=shop;User Id=sa;Password=" + M + ";"}},
		{"YAML-ish", []string{"helm", "install", "x", "--set", "auth.rootPassword=S3cret"}, []string{"helm", "install", "x", "--set", "auth.rootPassword=" + M}},
		{"query string sig", line("curl https://acct.blob.core.windows.net/c/b?sv=2022&sig=S3cretSig&se=2030"), line("curl https://acct.blob.core.windows.net/c/b?sv=2022&sig=" + M + "&se=2030")},
		{"redis URL no user", line("app --redis redis://:S3cret@cache:6379/0"), line("app --redis redis://:" + M + "@cache:6379/0")},
		{"X-Api-Key header", []string{"curl", "-H", "X-Api-Key: S3cret", "https://x"}, []string{"curl", "-H", "X-Api-Key: " + M, "https://x"}},
		{"Basic auth header", []string{"wget", "--header=Authorization: Basic YWxpY2U6UzNjcmV0", "https://x"}, []string{"wget", "--header=Authorization: Basic " + M, "https://x"}},
		{"Cookie header", []string{"curl", "-H", "Cookie: session=abc123; csrftoken=x", "https://x"}, []string{"curl", "-H", "Cookie: " + M, "https://x"}},

		// Token formats.
		{"GitHub token", line("git push https://x-access-token@github.com ghp_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"), line("git push https://x-access-token@github.com " + M)},
		{"GitLab token", line("glab auth login --hostname gl glpat-AbCdEfGhIjKlMnOpQrSt"), line("glab auth login --hostname gl " + M)},
		{"Slack bot token", line("notify xoxb-1234567890-abcdefghij"), line("notify " + M)},
		{"Slack webhook", line("curl -X POST https://hooks.slack.com/services/T000/B000/XXXXXXXX"), line("curl -X POST https://hooks.slack.com/services/" + M)},
		{"Stripe key", line("stripe --api-key sk_live_0123456789abcdefABCD listen"), line("stripe --api-key " + M + " listen")},
		{"AWS access key id", line("backup AKIAIOSFODNN7EXAMPLE bucket"), line("backup " + M + " bucket")},
		{"Google API key", line("maps AIzaSyA-abcdefghijklmnopqrstuvwxyz01234"), line("maps " + M)},
		{"JWT", line("client eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl"), line("client " + M)},
		{"npm token", line("npm publish npm_abcdefghijklmnopqrstuvwxyz0123456789"), line("npm publish " + M)},
		{"OpenAI key", line("llm sk-proj-abcdefghijklmnopqrstuvwxyz"), line("llm " + M)},
		{"SendGrid key", line("mail SG.abcdefghijklmnopqrstuv.abcdefghijklmnopqrstuvwxyz0123456789abcdefg"), line("mail " + M)},
		{"DigitalOcean token", line("doctl auth init -t dop_v1_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"), line("doctl auth init -t " + M)},
		{"Docker Hub PAT", line("login dckr_pat_abcdefghijklmnopqrstuvwxyz0"), line("login " + M)},
		{"private key block", []string{"app", "--key-data", "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----"}, []string{"app", "--key-data", M}},
		{"Telegram bot token", line("bot 1234567890:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw0"), line("bot " + M)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.out, Args(tc.in), "%q", tc.in)
		})
	}
}

// TestOrdinaryArguments: what must survive redaction whole.
func TestOrdinaryArguments(t *testing.T) {
	for _, args := range [][]string{
		line("ssh -p 22 admin@web1"),
		line("scp -P 2222 file host:/tmp"),
		line("nginx -g daemon off;"),
		line("mysql -u root -p shop"), // -p alone prompts; shop is the database
		line("psql --no-password -h db mydb"),
		line("docker run --user 1000:1000 -p 8080:80 nginx"),
		line("docker login --password-stdin -u bot registry"),
		line("ansible-playbook --ask-pass site.yml"),
		line("curl --key /etc/ssl/client.key --cert /etc/ssl/client.pem https://x"),
		line("ssh -i /home/a/.ssh/id_ed25519 -o PasswordAuthentication=no host"),
		line("kubectl create secret generic db --from-file=./creds"),
		line("app --token-file /run/secrets/token --secret-name web"),
		line("java -Xmx2g -cp /opt/app/lib/* com.example.Main --port 8080"),
		line("python3 -m http.server 8000"),
		line("curl https://api.example.com:8443/v1/users?page=2"),
		line("git clone https://github.com/connbeat/connbeat.git"),
		line("rsync -avz -e ssh src/ host:/dst/"),
		line("redis-server --port 6379 --save"),
		line("sort -k 2 -t , data.csv"),
		line("tar -czf backup.tar.gz /var/lib/app"),
		line("prometheus --web.listen-address=:9090 --storage.tsdb.path=/data"),
		{"sh", "-c", "cd /srv && exec ./server --port 8080"},
		line("grep -r password src/"),
		line("app --api-key"),
		line("app --secret --next"),
		line("x -p 3306"),
		line("openssl req -new -key server.key -out server.csr"),
	} {
		assert.Equal(t, args, Args(args), "%q", args)
	}
}

// FuzzArgs: redaction never panics, keeps the argument count, and leaves
// nothing it masked once to mask again.
func FuzzArgs(f *testing.F) {
	f.Add("app\x00--password\x00hunter2\x00postgres://u:p@h/db")
	f.Add("sh\x00-c\x00mysql -pS 'a b' \"c\\\"d\" ; redis-cli -a x | ssh h 'sshpass -p y'")
	f.Add("x\x00token=abc\x00{\"secret\":\"s\"}\x00Authorization: Bearer t")
	f.Add("curl\x00-u\x00a:b\x00https://u:p@ss@h:1/p@q")
	f.Fuzz(func(t *testing.T, cmdline string) {
		args := strings.Split(cmdline, "\x00")
		out := Args(args)
		if len(out) != len(args) {
			t.Fatalf("redaction changed the argument count: %d -> %d", len(args), len(out))
		}
		if again := Args(out); !equal(again, out) {
			t.Fatalf("not idempotent: %q -> %q -> %q", args, out, again)
		}
	})
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
