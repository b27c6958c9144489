-- wrk script: GET with a bearer token; TOKEN comes from the environment.
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
