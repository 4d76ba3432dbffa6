// A sync Job's tool written with aws-sdk-go-v2: it loads the shared config as the SDK
// does (AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE, AWS_PROFILE, web identity and
// container credentials) and prints GetCallerIdentity as JSON, so a test can check which
// account a profile reaches. With -list-roles it also lists the account's IAM roles.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

func main() {
	listRoles := flag.Bool("list-roles", false, "also list the account's IAM roles")
	flag.Parse()
	ctx := context.Background()
	cfg, err := config.LoadDefaultConfig(ctx)
	if err != nil {
		fail("load config", err)
	}
	out, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
	if err != nil {
		fail("GetCallerIdentity", err)
	}
	identity := map[string]any{"Account": aws.ToString(out.Account), "Arn": aws.ToString(out.Arn)}
	if *listRoles {
		roles, err := iam.NewFromConfig(cfg).ListRoles(ctx, &iam.ListRolesInput{})
		if err != nil {
			fail("ListRoles", err)
		}
		arns := []string{}
		for _, role := range roles.Roles {
			arns = append(arns, aws.ToString(role.Arn))
		}
		identity["Roles"] = arns
	}
	if err := json.NewEncoder(os.Stdout).Encode(identity); err != nil {
		os.Exit(1)
	}
}

func fail(what string, err error) {
	fmt.Fprintln(os.Stderr, what+":", err)
	os.Exit(1)
}
