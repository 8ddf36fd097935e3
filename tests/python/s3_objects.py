"""boto3, the AWS SDK for Python, against an S3-compatible endpoint: a client we did not write.

    python s3_objects.py ENDPOINT create BUCKET
    python s3_objects.py ENDPOINT dump BUCKET PREFIX

`create` makes the bucket; `dump` prints every object under PREFIX as JSON:
{"KEY": {"body": TEXT, "content_type": TYPE}}.
"""

import json
import sys

import boto3


def client(endpoint):
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test-reader",
        aws_secret_access_key="test-reader-secret",
    )


def dump(s3, bucket, prefix):
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            obj = s3.get_object(Bucket=bucket, Key=item["Key"])
            out[item["Key"]] = {
                "body": obj["Body"].read().decode("utf-8"),
                "content_type": obj.get("ContentType"),
            }
    return out


def main():
    endpoint, command, bucket = sys.argv[1], sys.argv[2], sys.argv[3]
    s3 = client(endpoint)
    if command == "create":
        s3.create_bucket(Bucket=bucket)
    elif command == "dump":
        print(json.dumps(dump(s3, bucket, sys.argv[4])))
    else:
        sys.exit(f"unknown command {command}")


if __name__ == "__main__":
    main()
